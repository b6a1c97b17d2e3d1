//! `vlmbench convert` as a user runs it, on the tiny random Gemma 3 GGUF: the checkpoint it writes
//! loads, and bad input ends in one error line naming the file and what is wrong.

use std::process::Command;

use vlm_models::gguf::tiny_gemma3::write_tiny_gemma3;

fn vlmbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vlmbench"))
}

#[test]
fn converts_the_tiny_gguf_and_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = write_tiny_gemma3(dir.path(), 3).unwrap();
    let out = dir.path().join("mlx");
    let o = vlmbench()
        .arg("convert")
        .arg("--from-gguf")
        .arg(&gguf)
        .arg("--out")
        .arg(&out)
        .arg("--keep-gguf-quantization")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains(
            "gemma3_text, 7 layers, hidden 256, 4 heads / 2 KV heads, head dim 64, vocab 384"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("x Q4_K -> affine 4-bit g32 (exact)"),
        "{stdout}"
    );
    assert!(stdout.contains("x Q6_K -> dense float32"), "{stdout}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Default: MLX affine 4-bit, group size 64; a second run into the same directory needs --force.
    let o = vlmbench()
        .arg("convert")
        .arg("--from-gguf")
        .arg(&gguf)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("exists and is not empty (pass --force to write into it)"),
        "{stderr}"
    );
    let o = vlmbench()
        .arg("convert")
        .arg("--from-gguf")
        .arg(&gguf)
        .arg("--out")
        .arg(&out)
        .arg("--force")
        .output()
        .unwrap();
    assert!(o.status.success());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["quantization"]["bits"], 4);
    assert_eq!(cfg["quantization"]["group_size"], 64);
    let o = vlmbench()
        .args(["convert", "--print-format-version"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        vlm_models::convert::FORMAT_VERSION.to_string()
    );
}

#[test]
fn bad_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let o = vlmbench()
        .arg("convert")
        .arg("--from-gguf")
        .arg(&missing)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot convert") && stderr.contains("nope.gguf"),
        "{stderr}"
    );
    let o = vlmbench()
        .args([
            "convert",
            "--from-gguf",
            "x.gguf",
            "--out",
            "o",
            "--bits",
            "7",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value '7' for '--bits"));
}
