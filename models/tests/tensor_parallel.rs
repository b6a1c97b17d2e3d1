//! Tensor-parallel Gemma 4 over MLX's ring backend, for real: two processes of this test binary
//! (the `#[ignore]`d `tp_rank` entry point) each load their shard of a tiny random 4-bit
//! checkpoint straight from its file, join a loopback ring, and run the same greedy generation
//! as one process running the whole model in-process. Tokens must be identical and logits equal
//! to float32 reduction-order noise, for the three tiny variants (dense = 31B flags with one
//! global KV head replicated on both ranks, moe = experts split too, ple = per-layer embeddings
//! and KV-shared layers).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mlx_rs::{Array, Dtype};
use vlm_models::checkpoint::Checkpoint;
use vlm_models::distributed::loopback::{run_ranks, write_loopback_hostfile};
use vlm_models::distributed::{Backend, Group};
use vlm_models::gemma4::{Config, Gemma4Text};
use vlm_models::tiny_checkpoint::{write_tiny_checkpoint, TinyVariant};

const STEPS: usize = 32;
const RANK_ENTRY: &str = "tp_rank";
/// Same float32 kernels on both sides; only the order of the o_proj/down_proj sums differs
/// (two half sums added instead of one pass), a few ulps of logits of magnitude ~1-30.
const TOL: f32 = 2e-4;

fn prompt() -> Vec<i32> {
    // <bos> <|turn> then 22 ordinary tokens: longer than the 16-token sliding window.
    let mut v = vec![2, 5];
    v.extend((0..22).map(|i| 100 + (i * 37) % 250));
    v
}

fn argmax(v: &[f32]) -> i32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as i32
}

/// Greedy tokens and every step's logits; chunked prefill (chunks of 8) then one token a step.
fn greedy(model: &Gemma4Text) -> (Vec<i32>, Vec<Vec<f32>>) {
    let ids = prompt();
    let ids = Array::from_slice(&ids, &[1, ids.len() as i32]);
    let mut cache = model.make_cache();
    let mut logits = model
        .prefill(&ids, None, None, &mut cache, Some(8))
        .unwrap();
    let (mut toks, mut rows) = (vec![], vec![]);
    for _ in 0..STEPS {
        let row = logits
            .as_dtype(Dtype::Float32)
            .unwrap()
            .as_slice::<f32>()
            .to_vec();
        let t = argmax(&row);
        toks.push(t);
        rows.push(row);
        logits = model
            .decode_step(&Array::from_slice(&[t], &[1, 1]), &mut cache)
            .unwrap();
    }
    (toks, rows)
}

fn load(dir: &Path, group: Option<Arc<Group>>) -> Gemma4Text {
    let ckpt = Checkpoint::open(dir).unwrap();
    let config = Config::from_checkpoint(&ckpt).unwrap();
    match group {
        Some(g) => Gemma4Text::load_tensor_parallel(&ckpt, &config, Dtype::Float32, g).unwrap(),
        None => Gemma4Text::load(&ckpt, Dtype::Float32).unwrap(),
    }
}

/// One rank: join the ring, load the shard named by VLMBENCH_TP_CHECKPOINT, print the result.
#[test]
#[ignore = "entry point of one rank; started by the tests below"]
fn tp_rank() {
    let dir = std::env::var("VLMBENCH_TP_CHECKPOINT").expect("launched by a parent test");
    let group = Arc::new(Group::init(Backend::Ring).expect("join the ring"));
    let model = load(Path::new(&dir), Some(group.clone()));
    let (toks, rows) = greedy(&model);
    let bytes = model.weight_bytes();
    println!(
        "RESULT {}",
        serde_json::json!({ "rank": group.rank(), "bytes": bytes, "tokens": toks, "logits": rows })
    );
}

/// `max_share`: the most of the whole model's weight bytes a rank may hold (the sharded
/// projections halve; embeddings, norms and PLE tables are replicated).
fn check_variant(variant: TinyVariant, max_share: f64) {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join(variant.name());
    write_tiny_checkpoint(&ckpt, variant, 0).unwrap();
    let whole = load(&ckpt, None);
    let (want_toks, want_rows) = greedy(&whole);
    let whole_bytes = whole.weight_bytes();

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
            ])
            .env("VLMBENCH_TP_CHECKPOINT", &ckpt);
            c
        })
        .collect();
    let outputs =
        run_ranks(commands, &hostfile, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    for o in &outputs {
        let line = o
            .stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, json)| json))
            .unwrap_or_else(|| {
                panic!(
                    "rank {} printed no result:\n{}\n{}",
                    o.rank, o.stdout, o.stderr
                )
            });
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["rank"], o.rank);
        let toks: Vec<i32> = serde_json::from_value(v["tokens"].clone()).unwrap();
        assert_eq!(
            toks, want_toks,
            "{variant}: rank {} greedy tokens differ from one process",
            o.rank
        );
        let rows: Vec<Vec<f32>> = serde_json::from_value(v["logits"].clone()).unwrap();
        let worst = rows
            .iter()
            .flatten()
            .zip(want_rows.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < TOL,
            "{variant}: rank {} logits differ by up to {worst}",
            o.rank
        );
        let bytes = v["bytes"].as_u64().unwrap() as usize;
        eprintln!(
            "{variant}: rank {} holds {bytes} of the model's {whole_bytes} weight bytes",
            o.rank
        );
        assert!(
            (bytes as f64) < max_share * whole_bytes as f64,
            "{variant}: rank {} holds {bytes} of {whole_bytes} weight bytes: not sharded",
            o.rank
        );
        eprintln!(
            "{variant}: rank {}: {STEPS} tokens identical, max |logit diff| {worst:.2e}",
            o.rank
        );
    }
}

#[test]
fn two_ranks_of_the_dense_tiny_model_generate_the_single_process_tokens() {
    check_variant(TinyVariant::Dense, 0.56);
}

#[test]
fn two_ranks_of_the_moe_tiny_model_generate_the_single_process_tokens() {
    check_variant(TinyVariant::Moe, 0.56);
}

#[test]
fn two_ranks_of_the_ple_tiny_model_generate_the_single_process_tokens() {
    check_variant(TinyVariant::Ple, 0.65);
}

/// A group whose size does not divide the model is refused at load time, naming the field,
/// before any weight is read. (A 3-rank split of 4 query heads; checked without a real group.)
#[test]
fn a_split_that_does_not_divide_the_heads_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), TinyVariant::Dense, 0).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let config = Config::from_checkpoint(&ckpt).unwrap();
    let err = vlm_models::gemma4::tensor_parallel::check_split(&config.text, 3, ckpt.config_path())
        .unwrap_err();
    assert!(
        err.to_string().ends_with("field `num_attention_heads`: 4 cannot be split over 3 tensor-parallel ranks: each rank needs the same number of query heads"),
        "{err}"
    );
}
