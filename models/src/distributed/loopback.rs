//! Running several ranks of one program on this machine over the loopback interface, the way
//! `mlx.launch -n N --backend ring` does: free ports, a ring hostfile, `MLX_RANK`/`MLX_HOSTFILE`
//! per process, and a supervisor that collects every rank's output, stops the others when one
//! fails and kills all of them at a deadline (a rank whose peer never comes up would otherwise
//! wait in `accept` forever). Used by the tests and by anyone reproducing docs/distributed.md.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Ports nobody listens on right now, distinct from each other. They are released before
/// returning, so another process could in principle take one before MLX binds it; on a test
/// machine that window is negligible and MLX then fails with "Couldn't bind socket".
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// MLX's ring hostfile: a JSON list with, per rank, the list of `"ip:port"` it listens on.
pub fn ring_hostfile_json(ports: &[u16]) -> String {
    let ranks: Vec<Vec<String>> = ports
        .iter()
        .map(|p| vec![format!("127.0.0.1:{p}")])
        .collect();
    serde_json::to_string(&ranks).expect("strings serialize")
}

/// Writes a loopback ring hostfile for `n` ranks on free ports into `path`.
pub fn write_loopback_hostfile(path: &Path, n: usize) -> std::io::Result<Vec<u16>> {
    let ports = free_loopback_ports(n)?;
    std::fs::write(path, ring_hostfile_json(&ports))?;
    Ok(ports)
}

/// What one rank did.
#[derive(Debug, Clone)]
pub struct RankOutput {
    pub rank: usize,
    /// `None` when the supervisor killed it.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl RankOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Why a launch did not succeed on every rank.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start rank {rank}: {source}")]
    Spawn {
        rank: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "ranks still running after {timeout:?} were killed{}",
        describe(outputs)
    )]
    Timeout {
        timeout: Duration,
        outputs: Vec<RankOutput>,
    },
    #[error("rank {rank} failed{}", describe(outputs))]
    Failed {
        rank: usize,
        outputs: Vec<RankOutput>,
    },
}

fn describe(outputs: &[RankOutput]) -> String {
    let mut s = String::new();
    for o in outputs {
        let status = match o.status {
            Some(st) => st.to_string(),
            None => "killed".into(),
        };
        s.push_str(&format!(
            "\n--- rank {} ({status}) stderr:\n{}",
            o.rank,
            o.stderr.trim_end()
        ));
    }
    s
}

enum Event {
    Stdout(usize, String),
    Stderr(usize, String),
}

/// Starts `commands[r]` as rank `r` with `MLX_RANK=r` and `MLX_HOSTFILE=hostfile`, and waits for
/// all of them. Output is captured. When one rank exits unsuccessfully the others are killed
/// (their peer is gone); at `timeout` every rank still running is killed.
pub fn run_ranks(
    commands: Vec<Command>,
    hostfile: &Path,
    timeout: Duration,
) -> Result<Vec<RankOutput>, LaunchError> {
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<Child> = Vec::new();
    for (rank, mut cmd) in commands.into_iter().enumerate() {
        cmd.env("MLX_RANK", rank.to_string())
            .env("MLX_HOSTFILE", hostfile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                kill_all(&mut children);
                return Err(LaunchError::Spawn { rank, source });
            }
        };
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let t = tx.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            let _ = t.send(Event::Stdout(rank, s));
        });
        let t = tx.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            let _ = t.send(Event::Stderr(rank, s));
        });
        children.push(child);
    }
    drop(tx);

    let n = children.len();
    let mut stdout: Vec<Option<String>> = vec![None; n];
    let mut stderr: Vec<Option<String>> = vec![None; n];
    let mut status: Vec<Option<ExitStatus>> = vec![None; n];
    let mut failed: Option<usize> = None;
    let mut timed_out = false;
    // Both pipes closed means the rank has exited (or closed them on purpose): reap it then.
    while status.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match rx.recv_timeout(left) {
            Ok(e) => e,
            Err(_) => {
                timed_out = true;
                kill_all(&mut children);
                break;
            }
        };
        let rank = match event {
            Event::Stdout(r, s) => {
                stdout[r] = Some(s);
                r
            }
            Event::Stderr(r, s) => {
                stderr[r] = Some(s);
                r
            }
        };
        if stdout[rank].is_some() && stderr[rank].is_some() {
            let st = children[rank].wait().ok();
            status[rank] = st;
            if !st.is_some_and(|s| s.success()) && failed.is_none() {
                failed = Some(rank);
                kill_all(&mut children);
            }
        }
    }
    if timed_out || failed.is_some() {
        // Killed ranks close their pipes promptly; collect what they wrote.
        for e in rx.iter() {
            match e {
                Event::Stdout(r, s) => stdout[r] = Some(s),
                Event::Stderr(r, s) => stderr[r] = Some(s),
            }
        }
        for (r, c) in children.iter_mut().enumerate() {
            if status[r].is_none() {
                let _ = c.wait();
            }
        }
    }
    let outputs: Vec<RankOutput> = (0..n)
        .map(|r| RankOutput {
            rank: r,
            status: status[r],
            stdout: stdout[r].take().unwrap_or_default(),
            stderr: stderr[r].take().unwrap_or_default(),
        })
        .collect();
    if timed_out {
        return Err(LaunchError::Timeout { timeout, outputs });
    }
    if let Some(rank) = failed {
        return Err(LaunchError::Failed { rank, outputs });
    }
    Ok(outputs)
}

fn kill_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        // Already-exited children make kill fail harmlessly.
        let _ = c.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_the_hostfile_is_mlx_s_list_of_lists() {
        let ports = free_loopback_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        let json = ring_hostfile_json(&[5000, 5001]);
        assert_eq!(json, r#"[["127.0.0.1:5000"],["127.0.0.1:5001"]]"#);
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn every_rank_sees_its_rank_and_the_hostfile() {
        let dir = tempfile::tempdir().unwrap();
        let hostfile = dir.path().join("hosts.json");
        let out = run_ranks(
            vec![
                sh("echo $MLX_RANK $MLX_HOSTFILE"),
                sh("echo $MLX_RANK $MLX_HOSTFILE"),
            ],
            &hostfile,
            Duration::from_secs(30),
        )
        .unwrap();
        for (r, o) in out.iter().enumerate() {
            assert!(o.success());
            assert_eq!(o.stdout.trim(), format!("{r} {}", hostfile.display()));
        }
    }

    #[test]
    fn a_failing_rank_stops_the_others_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // Rank 1 would wait forever for its peer; rank 0 fails at once.
        let err = run_ranks(
            vec![
                sh("echo boom >&2; exit 3"),
                sh("exec cat /dev/zero > /dev/null"),
            ],
            &dir.path().join("h.json"),
            Duration::from_secs(60),
        )
        .unwrap_err();
        match &err {
            LaunchError::Failed { rank, outputs } => {
                assert_eq!(*rank, 0);
                assert_eq!(outputs[0].stderr.trim(), "boom");
                assert!(!outputs[1].success());
            }
            other => panic!("expected Failed, got {other}"),
        }
        assert!(err.to_string().starts_with("rank 0 failed"), "{err}");
    }

    #[test]
    fn ranks_still_running_at_the_deadline_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let err = run_ranks(
            vec![sh("exec cat /dev/zero > /dev/null")],
            &dir.path().join("h.json"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, LaunchError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
