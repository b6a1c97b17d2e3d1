//! Assertions on `vlmbench` runs that must fail.

use std::process::Output;

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
