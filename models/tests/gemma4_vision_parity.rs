//! Image side of Gemma 4 against the Python reference (Pillow 13 + mlx-vlm 0.7.10 on MLX 0.32.2,
//! `tools/reference/gemma4_vision_ref.py`): image loading, Pillow's bicubic resize, the processor's
//! pixel tensor and prompt ids, and the vision tower's soft tokens, on tiny checkpoints made by
//! mlx-vlm's converter (`tools/reference/build_tiny_gemma4.py`).
//!
//! Images: the seeded synthetic image (`make_test_image.py`, 320x240), a real photo
//! (`skimage/data/chelsea.png`, 451x300, taken from the scikit-image 0.26.0 wheel into the cache),
//! files Pillow writes from it in other formats and layouts, and seeded noise of awkward sizes.
//!
//! Needs the reference Python: `VLMBENCH_REFERENCE_PYTHON` (tools/test.sh sets it; then these
//! tests fail rather than skip) or `tools/reference/.venv`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use mlx_rs::{Array, Dtype};
use serde_json::Value;
use vlm_models::image_io::{load_image, RgbImage};
use vlm_models::model::{ImageSupport, LoadedModel};
use vlm_models::pil_resize::resize_bicubic;

static SETUP: Mutex<()> = Mutex::new(());

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/reference")
}

fn work() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vision-parity");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_py(py: &Path, args: &[&str]) -> String {
    let out = Command::new(py)
        .args(args)
        .output()
        .expect("run the reference python");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(name: &str) -> String {
    tools().join(name).display().to_string()
}

/// The test images, made once per target dir: synthetic, photo, and Pillow-written variants.
struct Images {
    synth: PathBuf,
    photo: PathBuf,
    samples: Vec<PathBuf>,
}

fn images(py: &Path) -> Images {
    let _g = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let dir = work().join("images");
    let synth = dir.join("synth.png");
    let photo = dir.join("chelsea.png");
    let samples_dir = dir.join("samples");
    let list = dir.join("samples.txt");
    if !list.exists() {
        let s = synth.display().to_string();
        let p = photo.display().to_string();
        run_py(py, &[&script("make_test_image.py"), &s]);
        run_py(py, &[&script("gemma4_vision_ref.py"), "photo", "--out", &p]);
        let names = run_py(
            py,
            &[
                &script("gemma4_vision_ref.py"),
                "samples",
                "--image",
                &p,
                "--out",
                &samples_dir.display().to_string(),
            ],
        );
        std::fs::write(&list, names).unwrap();
    }
    let samples = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .map(|n| samples_dir.join(n))
        .collect();
    Images {
        synth,
        photo,
        samples,
    }
}

fn checkpoint(py: &Path, variant: &str) -> PathBuf {
    let _g = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let dir = work().join(format!("tiny-{variant}"));
    if !dir.join("model.safetensors").exists() {
        let d = dir.display().to_string();
        run_py(
            py,
            &[
                &script("build_tiny_gemma4.py"),
                &d,
                "--variant",
                variant,
                "--quiet",
            ],
        );
    }
    dir
}

/// Pillow's view of an image file: mlx-vlm's `load_image` (EXIF transpose, RGB).
fn pillow_load(py: &Path, file: &Path) -> RgbImage {
    let out = work().join("loaded.rgb");
    run_py(
        py,
        &[
            &script("gemma4_vision_ref.py"),
            "load",
            "--image",
            &file.display().to_string(),
            "--out",
            &out.display().to_string(),
        ],
    );
    let b = std::fs::read(&out).unwrap();
    let w = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let h = u32::from_le_bytes(b[4..8].try_into().unwrap());
    RgbImage::from_raw(w, h, b[8..].to_vec()).unwrap()
}

fn max_byte_diff(a: &[u8], b: &[u8]) -> (usize, u8) {
    let n = a.iter().zip(b).filter(|(x, y)| x != y).count();
    let m = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    (n, m)
}

#[test]
fn image_files_load_like_pillow() {
    let Some(py) = common::require_reference("image_files_load_like_pillow") else {
        return;
    };
    let imgs = images(&py);
    let mut files = vec![imgs.synth.clone(), imgs.photo.clone()];
    files.extend(imgs.samples.iter().cloned());
    let mut differing = vec![];
    for f in &files {
        let ours = load_image(f).unwrap();
        let theirs = pillow_load(&py, f);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            (ours.width(), ours.height()),
            (theirs.width(), theirs.height()),
            "{name}: size"
        );
        let (n, m) = max_byte_diff(ours.as_bytes(), theirs.as_bytes());
        eprintln!(
            "{name}: {}x{}, {n} of {} bytes differ from Pillow (max {m})",
            ours.width(),
            ours.height(),
            ours.as_bytes().len()
        );
        if n > 0 {
            differing.push(name);
        }
    }
    // JPEGs included: their pixels come from libjpeg-turbo's decoder, as in Pillow.
    assert!(differing.is_empty(), "differ from Pillow: {differing:?}");
}

/// Seeded noise (xorshift), so that every tap weight matters.
fn noise(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..w * h * 3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

#[test]
fn bicubic_resize_is_byte_exact_with_pillow() {
    let Some(py) = common::require_reference("bicubic_resize_is_byte_exact_with_pillow") else {
        return;
    };
    let imgs = images(&py);
    type Case = (String, RgbImage, Vec<(usize, usize)>);
    let mut cases: Vec<Case> = vec![];
    let processor_sizes = vec![(192, 144), (912, 672), (768, 768), (48, 768), (144, 192)];
    cases.push((
        "synth".into(),
        load_image(&imgs.synth).unwrap(),
        processor_sizes.clone(),
    ));
    cases.push((
        "chelsea".into(),
        load_image(&imgs.photo).unwrap(),
        processor_sizes,
    ));
    // Awkward shapes: tiny, extreme ratios, one axis up and the other down, one axis unchanged,
    // and both sides of Pillow 13's pass-order rule (vertical first when the height loses more
    // than twice as many pixels as the width).
    for (i, (w, h, targets)) in [
        (
            37usize,
            23usize,
            vec![(192, 144), (37, 96), (480, 23), (5, 3)],
        ),
        (1000, 7, vec![(768, 48), (1000, 48), (333, 7)]),
        (
            5,
            480,
            vec![(5, 48), (96, 480), (48, 768), (96, 48), (1, 1)],
        ),
        (301, 299, vec![(300, 300), (150, 600), (604, 97)]),
        (64, 64, vec![(60, 20), (20, 60), (200, 49), (61, 58)]),
        (1000, 100, vec![(900, 10), (100, 10), (1200, 90)]),
    ]
    .into_iter()
    .enumerate()
    {
        let img = RgbImage::from_raw(w as u32, h as u32, noise(w, h, i as u64 + 1)).unwrap();
        cases.push((format!("noise{w}x{h}"), img, targets));
    }
    let mut bytes = 0;
    for (name, img, targets) in &cases {
        let dir = work().join("resize").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("src.png");
        image::save_buffer(
            &png,
            img.as_bytes(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        let mut args = vec![
            script("gemma4_vision_ref.py"),
            "resize".into(),
            "--image".into(),
            png.display().to_string(),
        ];
        for (w, h) in targets {
            args.push("--size".into());
            args.push(format!("{w}x{h}"));
        }
        args.push("--out".into());
        args.push(dir.display().to_string());
        run_py(&py, &args.iter().map(String::as_str).collect::<Vec<_>>());
        for &(w, h) in targets {
            let theirs = std::fs::read(dir.join(format!("{w}x{h}.rgb"))).unwrap();
            let ours = resize_bicubic(
                img.as_bytes(),
                img.width() as usize,
                img.height() as usize,
                3,
                w,
                h,
            );
            let (n, m) = max_byte_diff(&ours, &theirs);
            assert_eq!(ours.len(), theirs.len(), "{name} -> {w}x{h}: length");
            assert_eq!(
                n,
                0,
                "{name} {}x{} -> {w}x{h}: {n} bytes differ from Pillow (max {m})",
                img.width(),
                img.height()
            );
            bytes += ours.len();
        }
    }
    eprintln!(
        "{bytes} resized bytes over {} images compared: all equal to Pillow's",
        cases.len()
    );
}

struct Reference {
    json: Value,
    tensors: std::collections::HashMap<String, Array>,
}

fn reference_encode(
    py: &Path,
    model: &Path,
    images: &[&Path],
    dtype: &str,
    tag: &str,
) -> Reference {
    let out = work().join(format!("encode-{tag}"));
    let mut args = vec![
        script("gemma4_vision_ref.py"),
        "encode".into(),
        "--model".into(),
        model.display().to_string(),
    ];
    for i in images {
        args.push("--image".into());
        args.push(i.display().to_string());
    }
    args.extend([
        "--dtype".into(),
        dtype.into(),
        "--out".into(),
        out.display().to_string(),
    ]);
    run_py(py, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let json =
        serde_json::from_str(&std::fs::read_to_string(out.join("ref.json")).unwrap()).unwrap();
    let tensors = Array::load_safetensors(out.join("tensors.safetensors")).unwrap();
    Reference { json, tensors }
}

fn f32s(a: &Array) -> Vec<f32> {
    a.as_dtype(Dtype::Float32)
        .unwrap()
        .as_slice::<f32>()
        .to_vec()
}

/// Processor and tower against mlx-vlm for one checkpoint, dtype and image list; returns the
/// largest soft-token difference.
fn encode_case(
    variant: &str,
    dtype: Dtype,
    pick: &dyn Fn(&Images) -> Vec<PathBuf>,
    tag: &str,
) -> f32 {
    let Some(py) = common::require_reference(tag) else {
        return 0.0;
    };
    let model_dir = checkpoint(&py, variant);
    let files = pick(&images(&py));
    let dname = if dtype == Dtype::Float32 {
        "float32"
    } else {
        "bfloat16"
    };
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let r = reference_encode(&py, &model_dir, &paths, dname, tag);

    let model = LoadedModel::load(&model_dir, dtype).unwrap();
    let rgb: Vec<RgbImage> = files.iter().map(|f| load_image(f).unwrap()).collect();
    let prompt = model.build_prompt("Describe this image.", &rgb).unwrap();
    assert_eq!(
        prompt.text,
        r.json["prompt"].as_str().unwrap(),
        "[{tag}] templated prompt"
    );
    let ref_ids: Vec<u32> = r.json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(prompt.ids, ref_ids, "[{tag}] expanded prompt ids");

    for (i, img) in prompt.images.iter().enumerate() {
        let theirs = &r.tensors[&format!("pixel_values_{i}")];
        let shape = r.json["images"][i]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as u32)
            .collect::<Vec<_>>();
        assert_eq!(
            shape,
            vec![3, img.height, img.width],
            "[{tag}] image {i}: pixel_values shape"
        );
        let t = f32s(theirs);
        let differ = img
            .pixel_values
            .iter()
            .zip(&t)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ, 0,
            "[{tag}] image {i}: {differ} pixel values differ from mlx-vlm's"
        );
        assert_eq!(img.pixel_values.len(), t.len());
    }

    let Some(ImageSupport::Gemma4(support)) = &model.images else {
        panic!("[{tag}] no vision support loaded")
    };
    let ours = f32s(&support.encode(&prompt.ids, &prompt.images).unwrap());
    let theirs = f32s(&r.tensors["features"]);
    assert_eq!(ours.len(), theirs.len(), "[{tag}] soft-token count");
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = theirs.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    eprintln!(
        "[{tag}] {} image(s), {} soft tokens: pixel tensors equal; max|soft-token diff| = {diff:.3e} (max |value| {scale:.2})",
        prompt.images.len(),
        prompt.images.iter().map(|i| i.num_soft_tokens).sum::<usize>()
    );
    diff
}

/// float32: the same MLX ops in the same order on the same backend; measured 0 on these
/// checkpoints. 1e-5 (values of magnitude ~1-3) leaves room for a BLAS reduction-order change.
const TOL_F32: f32 = 1e-5;

#[test]
fn dense_float32_synthetic_image_matches_mlx_vlm() {
    let d = encode_case(
        "dense",
        Dtype::Float32,
        &|i| vec![i.synth.clone()],
        "dense-f32-synth",
    );
    assert!(d <= TOL_F32, "soft tokens differ by {d}");
}

#[test]
fn dense_float32_photo_matches_mlx_vlm() {
    let d = encode_case(
        "dense",
        Dtype::Float32,
        &|i| vec![i.photo.clone()],
        "dense-f32-photo",
    );
    assert!(d <= TOL_F32, "soft tokens differ by {d}");
}

#[test]
fn ple_float32_clipped_linears_match_mlx_vlm() {
    let d = encode_case(
        "ple",
        Dtype::Float32,
        &|i| vec![i.photo.clone()],
        "ple-f32-photo",
    );
    assert!(d <= TOL_F32, "soft tokens differ by {d}");
}

#[test]
fn two_images_same_size_and_different_sizes_match_mlx_vlm() {
    // synth and chelsea both become 192x144: one batch through the tower.
    let d = encode_case(
        "dense",
        Dtype::Float32,
        &|i| vec![i.synth.clone(), i.photo.clone()],
        "dense-f32-two-batched",
    );
    assert!(d <= TOL_F32, "soft tokens differ by {d}");
    // The EXIF-rotated photo is 144 wide x 192 high: images go through the tower one by one.
    let rotated = |i: &Images| {
        vec![
            i.photo.clone(),
            i.samples
                .iter()
                .find(|p| p.ends_with("exif6.png"))
                .unwrap()
                .clone(),
        ]
    };
    let d = encode_case("dense", Dtype::Float32, &rotated, "dense-f32-two-sizes");
    assert!(d <= TOL_F32, "soft tokens differ by {d}");
}

#[test]
fn jpeg_photo_with_exif_orientation_matches_mlx_vlm() {
    let jpeg = |i: &Images| {
        vec![i
            .samples
            .iter()
            .find(|p| p.ends_with("exif6.jpg"))
            .unwrap()
            .clone()]
    };
    let d = encode_case("dense", Dtype::Float32, &jpeg, "dense-f32-jpeg-exif6");
    assert!(d <= TOL_F32, "soft tokens differ by {d}");
}

#[test]
fn dense_bfloat16_matches_mlx_vlm() {
    let d = encode_case(
        "dense",
        Dtype::Bfloat16,
        &|i| vec![i.photo.clone()],
        "dense-bf16-photo",
    );
    // The same bf16 ops in the same order: measured 0. One bf16 ulp at |v| in [2, 4) is 0.0156,
    // so any real divergence shows up far above this bound.
    assert!(d <= 1e-6, "soft tokens differ by {d}");
}
