//! `VLMBENCH_PREFILL`: pacing a long prompt's layers changes when the work is submitted, never
//! what it computes; a bad value is one clear error.

use std::process::{Command, Output};

use serde_json::Value;

fn vlmbench(args: &[&str], prefill: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    cmd.args(args).env_remove("VLMBENCH_PREFILL");
    if let Some(choice) = prefill {
        cmd.env("VLMBENCH_PREFILL", choice);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn paced_prefill_gives_the_default_tokens_on_every_tiny_layout() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough (> 256 tokens) that the pacer runs.
    let prompt = "the harbour at dawn, gulls over quiet water ".repeat(40);
    for variant in ["dense", "moe", "ple"] {
        let model = tmp.path().join(variant);
        let made = vlmbench(
            &["make-tiny", model.to_str().unwrap(), "--variant", variant],
            None,
        );
        assert!(made.status.success(), "{}", text(&made.stderr));
        let run = |prefill: Option<&str>| -> Value {
            let out = vlmbench(
                &[
                    "generate",
                    "-m",
                    model.to_str().unwrap(),
                    "-p",
                    &prompt,
                    "--max-tokens",
                    "12",
                    "--ignore-eos",
                    "--temperature",
                    "0",
                    "--json",
                ],
                prefill,
            );
            assert!(out.status.success(), "{variant}: {}", text(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let default = run(None);
        let paced = run(Some("paced"));
        assert!(
            default["prompt_ids"].as_array().unwrap().len() > 256,
            "{variant}: the prompt must reach the pacer's threshold"
        );
        assert_eq!(default["token_ids"], paced["token_ids"], "{variant}");
    }
}

#[test]
fn paced_prefill_gives_the_default_tokens_after_an_image_on_the_31b_layout() {
    // The 31B layout at toy widths keeps the real image size: 2520 patches through the paced
    // vision encoder, then a paced 306-token prompt.
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mini");
    let model = model.to_str().unwrap();
    let made = vlmbench(&["make-tiny", "--preset", "gemma-4-31b-mini", model], None);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let image = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/astronaut.jpg");
    let run = |prefill: Option<&str>| -> Value {
        let out = vlmbench(
            &[
                "generate",
                "-m",
                model,
                "-p",
                "Describe this image.",
                "--image",
                image,
                "--max-tokens",
                "12",
                "--ignore-eos",
                "--temperature",
                "0",
                "--json",
            ],
            prefill,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let default = run(None);
    let paced = run(Some("paced"));
    assert!(default["prompt_ids"].as_array().unwrap().len() > 256);
    assert_eq!(default["token_ids"], paced["token_ids"]);
}

#[test]
fn an_unknown_prefill_choice_is_one_error_line_naming_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    assert!(vlmbench(&["make-tiny", model.to_str().unwrap()], None)
        .status
        .success());
    // A short prompt too: the choice is checked whether or not the pacer would run.
    let out = vlmbench(
        &[
            "generate",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "hi",
            "--max-tokens",
            "2",
        ],
        Some("fast"),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("VLMBENCH_PREFILL=\"fast\"") && errors[0].contains("`paced`"),
        "{stderr}"
    );
}
