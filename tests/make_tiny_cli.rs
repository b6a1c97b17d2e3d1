//! `vlmbench make-tiny` as a user runs it: writes, refuses a non-empty folder, `--force`, help.

use std::path::Path;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn writes_reports_and_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny");
    let run = vlmbench(&["make-tiny", path(&out), "--variant", "moe", "--seed", "3"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(
        stdout.contains("random weights (variant moe, seed 3)"),
        "{stdout}"
    );
    assert!(stdout.contains("299 tensors, 9 files"), "{stdout}");
    assert!(
        stdout.contains("65 quantized modules: affine 4-bit, group size 64 (6 at 8 bits)"),
        "{stdout}"
    );
    assert!(stdout.contains("model.safetensors"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["text_config"]["enable_moe_block"], true);
    let weights = std::fs::read(out.join("model.safetensors")).unwrap();

    // A second run into the same folder: one error line naming the folder, nothing touched.
    let again = vlmbench(&["make-tiny", path(&out), "--variant", "dense"]);
    let line = common::cli::only_an_error_line(&again);
    assert!(
        line.contains("is not empty") && line.contains("--force") && line.contains(path(&out)),
        "{line}"
    );
    assert!(again.stdout.is_empty());
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        weights
    );

    // --force writes over it; the same variant and seed give the same bytes. Files make-tiny does
    // not own stay, and the user hears about them (a stale shard would be loaded with ours).
    std::fs::write(out.join("model-00002-of-00002.safetensors"), b"stale").unwrap();
    let forced = vlmbench(&[
        "make-tiny",
        path(&out),
        "--variant",
        "moe",
        "--seed",
        "3",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        weights
    );
    let stdout = text(&forced.stdout);
    assert!(
        stdout.contains("kept 1 other file(s) in the folder: model-00002-of-00002.safetensors"),
        "{stdout}"
    );
}

#[test]
fn an_empty_existing_folder_is_fine_and_bad_input_is_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = vlmbench(&["make-tiny", path(tmp.path())]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("variant dense, seed 0"));

    let file = tmp.path().join("config.json");
    let blocked = vlmbench(&["make-tiny", path(&file.join("sub"))]);
    assert_eq!(blocked.status.code(), Some(1));
    let stderr = text(&blocked.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot create the checkpoint folder"),
        "{stderr}"
    );

    let bad = vlmbench(&["make-tiny", path(&tmp.path().join("x")), "--variant", "31b"]);
    assert_eq!(bad.status.code(), Some(2), "clap usage error");
    assert!(text(&bad.stderr).contains("dense"), "{}", text(&bad.stderr));
}

#[test]
fn help_says_the_weights_are_random_and_what_for() {
    let help = vlmbench(&["make-tiny", "--help"]);
    assert!(help.status.success());
    let help = text(&help.stdout);
    for needle in [
        "RANDOM weights",
        "tests and offline demos",
        "--variant",
        "--seed",
        "--force",
        "moe",
        "ple",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

/// The full-size preset path at toy widths: `--preset gemma-4-31b-mini` writes the 31B structure
/// in several shards with an index, and vlmbench's own loader reads it back and generates exactly
/// the asked number of tokens from a text prompt and from an image prompt (280 soft tokens max).
#[test]
fn the_31b_mini_preset_is_sharded_and_loads_and_generates_text_and_image() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mini");
    let run = vlmbench(&["make-tiny", path(&out), "--preset", "gemma-4-31b-mini"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(
        stdout.contains("with the shapes of gemma-4-31b-mini and random weights (seed 0)"),
        "{stdout}"
    );
    let shards: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("model-") && n.ends_with(".safetensors"))
        .collect();
    assert!(shards.len() >= 3, "{shards:?}");
    assert!(!out.join("model.safetensors").exists());
    assert!(out.join("model.safetensors.index.json").is_file());

    let image = tmp.path().join("gradient.png");
    image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([x as u8, y as u8, 128]))
        .save(&image)
        .unwrap();
    for with_image in [false, true] {
        let mut args = vec![
            "generate",
            "-m",
            path(&out),
            "-p",
            "Describe this.",
            "--max-tokens",
            "5",
            "--ignore-eos",
            "--json",
        ];
        if with_image {
            args.extend(["--image", path(&image)]);
        }
        let gen = vlmbench(&args);
        assert!(
            gen.status.success(),
            "image {with_image}: {}",
            text(&gen.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&gen.stdout).unwrap();
        let ids = report["token_ids"].as_array().unwrap();
        assert_eq!(ids.len(), 5, "image {with_image}: {report}");
        assert!(ids.iter().all(|id| id.as_u64().unwrap() < 4096), "{ids:?}");
        if with_image {
            let soft = report["images"][0]["soft_tokens"].as_u64().unwrap();
            assert!(soft > 16 && soft <= 280, "{soft}");
        }
    }

    let bad = vlmbench(&[
        "make-tiny",
        path(&tmp.path().join("x")),
        "--preset",
        "gemma-4-70b",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("gemma-4-31b"),
        "{}",
        text(&bad.stderr)
    );
}

/// `--one-rank-of N` writes the shapes one tensor-parallel rank computes with: the config says
/// so, vlmbench loads and runs it like any checkpoint, and a split tensor parallelism would refuse
/// is refused here too, in one line naming the field, before anything is written.
#[test]
fn one_rank_of_writes_a_loadable_rank_shaped_preset_and_refuses_an_uneven_split() {
    let tmp = tempfile::tempdir().unwrap();
    let one_rank_of = |dir: &Path, n: &str| {
        vlmbench(&[
            "make-tiny",
            path(dir),
            "--preset",
            "gemma-4-31b-mini",
            "--one-rank-of",
            n,
        ])
    };
    let out = tmp.path().join("rank");
    let run = one_rank_of(&out, "2");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(
        stdout.contains("shapes of one of 2 tensor-parallel ranks of gemma-4-31b-mini"),
        "{stdout}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let t = &config["text_config"];
    assert_eq!(
        [
            &t["num_attention_heads"],
            &t["num_key_value_heads"],
            &t["num_global_key_value_heads"],
            &t["intermediate_size"],
            &t["hidden_size"]
        ],
        [4, 2, 1, 512, 256]
    );
    let gen = vlmbench(&[
        "generate",
        "-m",
        path(&out),
        "-p",
        "Hi",
        "--max-tokens",
        "3",
        "--ignore-eos",
        "--json",
    ]);
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let report: serde_json::Value = serde_json::from_slice(&gen.stdout).unwrap();
    assert_eq!(report["token_ids"].as_array().unwrap().len(), 3);

    let uneven = tmp.path().join("uneven");
    let bad = one_rank_of(&uneven, "3");
    let line = common::cli::only_an_error_line(&bad);
    assert!(
        line.contains("num_attention_heads = 8 cannot be split over 3"),
        "{line}"
    );
    assert!(!uneven.exists());

    let without_preset = vlmbench(&["make-tiny", path(&uneven), "--one-rank-of", "2"]);
    assert_eq!(without_preset.status.code(), Some(2));
    assert!(
        text(&without_preset.stderr).contains("--preset"),
        "{}",
        text(&without_preset.stderr)
    );
}
