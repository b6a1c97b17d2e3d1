//! Output piped into a reader that stops early (`vlmbench doctor | head -1`) ends the process
//! quietly, as with other Unix tools: no panic message.

use std::process::{Command, Stdio};

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_run_without_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .arg("doctor")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child has loaded MLX and printed anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr expected: {stderr}");
}
