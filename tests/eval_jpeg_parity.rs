//! The notebook's JPEG re-save of COCO images (Pillow's `img.save("x.jpg")`, quality 75) against
//! Pillow itself: for each sample photo, our re-encoded JPEG must decode to exactly the pixels that
//! Pillow's re-encoded JPEG decodes to. Grayscale images (COCO has some) stay one-channel in the
//! notebook's JPEG while we encode RGB: the pixels must still agree. Needs `VLMBENCH_REFERENCE_PYTHON`.

use std::path::Path;
use std::process::Command;

use vlm_models::image_io::load_image;
use vlmbench::eval::pillow_jpeg::jpeg_round_trip;

const PILLOW_RESAVE: &str = r#"
import io, sys
from PIL import Image
img = Image.open(sys.argv[1])
if img.mode != "L":
    img = img.convert("RGB")
buf = io.BytesIO()
img.save(buf, format="JPEG")
sys.stdout.buffer.write(Image.open(io.BytesIO(buf.getvalue())).convert("RGB").tobytes())
"#;

#[test]
fn resaved_jpeg_pixels_match_pillows() {
    let Some(python) = std::env::var_os("VLMBENCH_REFERENCE_PYTHON") else {
        eprintln!(
            "NOT RUN: set VLMBENCH_REFERENCE_PYTHON (tools/test.sh does) to compare with Pillow"
        );
        return;
    };
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images");
    let tmp = tempfile::tempdir().unwrap();
    let gray = tmp.path().join("chelsea-gray.png");
    let made = Command::new(&python)
        .args(["-c", "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('L').save(sys.argv[2])"])
        .arg(assets.join("chelsea.png"))
        .arg(&gray)
        .status()
        .unwrap();
    assert!(made.success());
    for path in ["astronaut.jpg", "chelsea.png", "coffee.jpg"]
        .map(|n| assets.join(n))
        .into_iter()
        .chain([gray])
    {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let name = name.as_str();
        let out = Command::new(&python)
            .args(["-c", PILLOW_RESAVE])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = jpeg_round_trip(&load_image(&path).unwrap(), name).unwrap();
        let original = load_image(&path).unwrap();
        assert_ne!(
            ours.as_bytes(),
            original.as_bytes(),
            "{name}: the round trip changed nothing (not a lossy JPEG?)"
        );
        let differing = ours
            .as_bytes()
            .iter()
            .zip(&out.stdout)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(ours.as_bytes().len(), out.stdout.len(), "{name}: size");
        assert_eq!(
            differing, 0,
            "{name}: {differing} bytes differ from Pillow's round trip"
        );
    }
}
