//! MLX's ring backend through our mlx-c wrapper, for real: two processes of this test binary join
//! a ring over loopback and check the collectives' results. The parent test starts the ranks (the
//! `#[ignore]`d `ring_rank` entry point, run with `--ignored --exact`) and supervises them.

use std::process::Command;
use std::time::Duration;

use mlx_rs::Array;
use vlm_models::distributed::loopback::{run_ranks, write_loopback_hostfile};
use vlm_models::distributed::{Backend, Group};

const RANK_ENTRY: &str = "ring_rank";

/// The body each rank runs (only inside a launched rank: it needs MLX_RANK and MLX_HOSTFILE).
#[test]
#[ignore = "entry point of one rank; started by two_processes_sum_and_gather_over_a_loopback_ring"]
fn ring_rank() {
    let group = Group::init(Backend::Ring).expect("join the ring");
    let rank = group.rank();
    assert_eq!(group.size(), 2);
    assert_eq!(
        rank,
        std::env::var("MLX_RANK").unwrap().parse::<i32>().unwrap()
    );

    // float32 of more elements than ranks, and a single int32 (MLX pads the ones shorter than
    // the ring), as tensor parallelism uses them.
    let r = rank as f32;
    let x = Array::from_slice(&[1.0 + r, 10.0 * (1.0 + r), -0.5 * r], &[1, 3]);
    let s = group.all_sum(&x).unwrap();
    assert_eq!(s.shape(), &[1, 3]);
    assert_eq!(s.as_slice::<f32>(), &[3.0, 30.0, -0.5]);
    let one = group
        .all_sum(&Array::from_slice(&[7 * (rank + 1)], &[1]))
        .unwrap();
    assert_eq!(one.as_slice::<i32>(), &[21]);

    let g = group
        .all_gather(&Array::from_slice(&[rank, 100 + rank], &[1, 2]))
        .unwrap();
    assert_eq!(g.shape(), &[2, 2]);
    assert_eq!(g.as_slice::<i32>(), &[0, 100, 1, 101]);
    // Broadcast of a value that itself needs a collective: every rank must run that collective
    // first (in the same order as rank 0) even though only rank 0's value is kept.
    let three = group
        .all_sum(&Array::from_slice(&[rank + 1], &[1]))
        .unwrap();
    let mine = three.multiply(Array::from_int(10 + rank)).unwrap();
    let b = group.broadcast_from_rank0(&mine).unwrap();
    assert_eq!(b.as_slice::<i32>(), &[30]);
    group.barrier().unwrap();
    println!("rank {rank} ok");
}

#[test]
fn two_processes_sum_and_gather_over_a_loopback_ring() {
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts.json");
    write_loopback_hostfile(&hostfile, 2).unwrap();
    let exe = std::env::current_exe().unwrap();
    let commands = (0..2)
        .map(|_| {
            let mut c = Command::new(&exe);
            c.args([
                "--ignored",
                "--exact",
                RANK_ENTRY,
                "--nocapture",
                "--test-threads=1",
            ]);
            c
        })
        .collect();
    let outputs =
        run_ranks(commands, &hostfile, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    for o in &outputs {
        assert!(
            o.stdout.contains(&format!("rank {} ok", o.rank)),
            "rank {}: {}\n{}",
            o.rank,
            o.stdout,
            o.stderr
        );
        // The entry point really ran (a filter typo would run zero tests and still succeed).
        assert!(
            o.stdout.contains("1 passed"),
            "rank {}: {}",
            o.rank,
            o.stdout
        );
    }
}
