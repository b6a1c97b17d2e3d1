//! `vlmbench convert --to-gguf` as a user runs it on tiny random Gemma 4 checkpoints: the report
//! says what each tensor became and that the Q4_1 file is exact, and what llama.cpp cannot run
//! ends in one error line naming the problem.

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{only_an_error_line, text, vlmbench};

fn tiny(dir: &std::path::Path, variant: &str) -> String {
    let ckpt = dir.join(variant);
    let o = vlmbench(&["make-tiny", ckpt.to_str().unwrap(), "--variant", variant]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    ckpt.to_str().unwrap().to_string()
}

#[test]
fn exports_the_tiny_checkpoint_and_reports_exactness() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), "dense");
    let out = dir.path().join("tiny.gguf");
    let out = out.to_str().unwrap();
    let o = vlmbench(&["convert", "--to-gguf", out, "--model", &ckpt]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(
        stdout.contains("gemma4 (q4_1), 6 layers, hidden 128, vocab 384, 85 tensors"),
        "{stdout}"
    );
    assert!(
        stdout.contains("41 x 4-bit g64 -> Q4_1 (lossless)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fp16 scales/biases: 0 of 30720 not exact (0 out of range)"),
        "{stdout}"
    );
    assert!(stdout.contains("left out: `vision_tower`"), "{stdout}");

    // The file exists now: replacing it needs --force.
    let line = only_an_error_line(&vlmbench(&["convert", "--to-gguf", out, "--model", &ckpt]));
    assert!(
        line.contains("exists (pass --force to replace it)"),
        "{line}"
    );
    let o = vlmbench(&[
        "convert",
        "--to-gguf",
        out,
        "--model",
        &ckpt,
        "--gguf-type",
        "q4_k_m",
        "--force",
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("-> Q6_K (re-quantized)"), "{stdout}");
}

#[test]
fn what_llama_cpp_cannot_run_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    // The tiny PLE model shares KV across layers in a pattern llama.cpp's gemma4 does not.
    let ckpt = tiny(dir.path(), "ple");
    let out = dir.path().join("p.gguf");
    let line = only_an_error_line(&vlmbench(&[
        "convert",
        "--to-gguf",
        out.to_str().unwrap(),
        "--model",
        &ckpt,
    ]));
    assert!(
        line.starts_with("error: cannot export")
            && line.contains("num_kv_shared_layers")
            && line.contains("llama.cpp cannot run this layer pattern"),
        "{line}"
    );
    assert!(!out.exists());

    let missing = dir.path().join("nope");
    let line = only_an_error_line(&vlmbench(&[
        "convert",
        "--to-gguf",
        "x.gguf",
        "--model",
        missing.to_str().unwrap(),
    ]));
    assert!(line.contains("nope"), "{line}");
    let o = vlmbench(&["convert", "--to-gguf", "x.gguf"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--model"), "{}", text(&o.stderr));
}
