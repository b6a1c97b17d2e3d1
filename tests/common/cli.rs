//! Running `vlmbench` from the integration tests, and assertions on runs that must fail.

use std::process::{Command, Output};

/// `vlmbench ARGS`, waited for, its output captured.
pub fn vlmbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args(args)
        .output()
        .unwrap()
}

/// Output bytes as text (lossy), for messages and parsing.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one `error: ` line of a run that had to fail: exit status 1, no panic, and exactly one
/// stderr line starting with `error: ` (notes may come before it).
pub fn the_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one `error: ` line expected: {stderr}");
    errors[0].to_string()
}

/// As [`the_error_line`], and nothing else on stderr.
pub fn only_an_error_line(out: &Output) -> String {
    let line = the_error_line(out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "nothing but the error expected: {stderr}"
    );
    line
}
