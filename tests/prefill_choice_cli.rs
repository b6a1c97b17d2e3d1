//! `VLMBENCH_PREFILL`: pacing a long prompt's layers changes when the work is submitted, never
//! what it computes; a bad value is one clear error.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::text;

fn vlmbench(args: &[&str], prefill: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    cmd.args(args).env_remove("VLMBENCH_PREFILL");
    if let Some(choice) = prefill {
        cmd.env("VLMBENCH_PREFILL", choice);
    }
    cmd.output().unwrap()
}

/// `vlmbench make-tiny` into `dir` with `args`, asserting it worked.
fn make_tiny(dir: &Path, args: &[&str]) -> String {
    let dir = dir.to_str().unwrap();
    let made = vlmbench(&[&["make-tiny", dir], args].concat(), None);
    assert!(made.status.success(), "{}", text(&made.stderr));
    dir.to_string()
}

/// The token ids and prompt length of 12 greedy steps of `generate -m model` with `args`.
fn greedy_tokens(model: &str, args: &[&str], prefill: Option<&str>) -> (Value, usize) {
    let common = [
        "generate",
        "-m",
        model,
        "--max-tokens",
        "12",
        "--ignore-eos",
    ];
    let greedy = ["--temperature", "0", "--json"];
    let out = vlmbench(&[&common[..], args, &greedy].concat(), prefill);
    assert!(out.status.success(), "{model}: {}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prompt_len = json["prompt_ids"].as_array().unwrap().len();
    (json["token_ids"].clone(), prompt_len)
}

#[test]
fn paced_prefill_gives_the_default_tokens_on_every_tiny_layout() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough (> 256 tokens) that the pacer runs.
    let prompt = "the harbour at dawn, gulls over quiet water ".repeat(40);
    for variant in ["dense", "moe", "ple"] {
        let model = make_tiny(&tmp.path().join(variant), &["--variant", variant]);
        let (default, prompt_len) = greedy_tokens(&model, &["-p", &prompt], None);
        let (paced, _) = greedy_tokens(&model, &["-p", &prompt], Some("paced"));
        assert!(
            prompt_len > 256,
            "{variant}: the prompt must reach the pacer's threshold"
        );
        assert_eq!(default, paced, "{variant}");
    }
}

#[test]
fn paced_prefill_gives_the_default_tokens_after_an_image_on_the_31b_layout() {
    // The 31B layout at toy widths keeps the real image size: 2520 patches through the paced
    // vision encoder, then a paced 306-token prompt.
    let tmp = tempfile::tempdir().unwrap();
    let model = make_tiny(&tmp.path().join("mini"), &["--preset", "gemma-4-31b-mini"]);
    let image = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/astronaut.jpg");
    let args = ["-p", "Describe this image.", "--image", image];
    let (default, prompt_len) = greedy_tokens(&model, &args, None);
    let (paced, _) = greedy_tokens(&model, &args, Some("paced"));
    assert!(prompt_len > 256);
    assert_eq!(default, paced);
}

#[test]
fn an_unknown_prefill_choice_is_one_error_line_naming_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let model = make_tiny(&tmp.path().join("tiny"), &[]);
    // A short prompt too: the choice is checked whether or not the pacer would run.
    let out = vlmbench(
        &["generate", "-m", &model, "-p", "hi", "--max-tokens", "2"],
        Some("fast"),
    );
    let line = common::cli::the_error_line(&out);
    assert!(
        line.contains("VLMBENCH_PREFILL=\"fast\"") && line.contains("`paced`"),
        "{line}"
    );
}

#[test]
fn an_unknown_prefill_choice_is_an_error_for_moondream_2_too() {
    // Moondream 2 never paces nor dequantizes, yet a bad value must not pass silently.
    let tmp = tempfile::tempdir().unwrap();
    let model = make_tiny(&tmp.path().join("md"), &["--arch", "moondream2"]);
    let image = tmp.path().join("img.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 150]))
        .save(&image)
        .unwrap();
    let out = vlmbench(
        &["caption", "-m", &model, "--image", image.to_str().unwrap()],
        Some("fast"),
    );
    let line = common::cli::the_error_line(&out);
    assert!(line.contains("VLMBENCH_PREFILL=\"fast\""), "{line}");
}
