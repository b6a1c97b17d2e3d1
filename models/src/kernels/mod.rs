//! vlmbench's own code paths for the hot spots MLX's stock kernels leave slow:
//! - [`qgemv`] (CUDA GPUs): a 4-bit matrix-vector kernel for one-row products, compiled ahead
//!   of time to PTX and launched through MLX's `fast::precompiled_cuda_kernel` ([`precompiled`]);
//!   by default on CUDA (`VLMBENCH_PREFILL`, [`Prefill`]) prompts' 4-bit products dequantize the
//!   weight and multiply densely, and prompts run a few layers in flight at a time;
//! - [`short_inner`] (CUDA GPUs): products MLX's quantized GEMM gets wrong (under 128 inputs)
//!   padded to a size it gets right;
//! - [`cpu_quant`] (CPUs): quantized products of every bit width and group size MLX writes, any
//!   row count, computed in Rust on the weights' own buffers (MLX has no custom-kernel API for
//!   the CPU); [`cpu_matmul`] the dense float32 ones;
//! - [`cpu_ops`] (CPUs): the norms, rotations and attention between the products, for decoders
//!   that run a whole forward pass on the CPU ([`crate::gemma3::cpu`]);
//! - [`cpu_attention`] (CPUs): scaled dot-product attention from the same SGEMM ([`cpu`] applies
//!   both to MLX arrays);
//! - [`fused`] (CUDA GPUs): the elementwise chains of the GELU gate and the logit soft-cap traced
//!   once with MLX's `compile`, which fuses each chain into one kernel (as mlx-vlm's compiled
//!   functions do).
//!
//! Which path runs is a process-wide choice ([`Kernels`]): `VLMBENCH_KERNELS=mlx` keeps MLX's
//! stock kernels and op-by-op graphs everywhere, `gemv` adds the matrix products, `vlmbench`
//! (the default) the fusions too, so each change can be measured with one binary.

pub mod check;
pub mod cpu;
pub mod cpu_attention;
pub mod cpu_layers;
pub mod cpu_matmul;
pub mod cpu_ops;
pub mod cpu_quant;
pub mod cpu_team;
pub mod fused;
pub mod precompiled;
pub mod qgemv;
pub mod short_inner;

use std::sync::OnceLock;

use mlx_rs::{Array, Dtype, Stream};

use crate::error::{ModelError, Result};

/// Who runs the hot-path operations on a CUDA GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernels {
    /// MLX's stock kernels, op by op (the unoptimized path).
    Mlx,
    /// vlmbench's matrix products (GPU GEMV, CPU products and attention), the rest op by op.
    Gemv,
    /// The default: `Gemv` plus the GELU gate and the logit soft-cap fused by MLX `compile` on
    /// CUDA (faster decode than `Gemv` with the same tokens and log-probabilities on the tiny
    /// checkpoints: charts/gpu/h100-fused-default).
    Vlmbench,
}

/// The process's choice: `VLMBENCH_KERNELS` = `mlx`, `gemv` or `vlmbench` (the default). Read once.
pub fn kernels_choice() -> Result<Kernels> {
    static CHOICE: OnceLock<std::result::Result<Kernels, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| parse_kernels(std::env::var("VLMBENCH_KERNELS").ok().as_deref()))
        .clone()
        .map_err(ModelError::Input)
}

const KERNEL_NAMES: [(&str, Kernels); 3] = [
    ("mlx", Kernels::Mlx),
    ("gemv", Kernels::Gemv),
    ("vlmbench", Kernels::Vlmbench),
];

impl Kernels {
    /// The `VLMBENCH_KERNELS` value that selects this choice.
    pub fn name(self) -> &'static str {
        name_of(&KERNEL_NAMES, self)
    }
}

fn parse_kernels(value: Option<&str>) -> std::result::Result<Kernels, String> {
    parse_choice(
        "VLMBENCH_KERNELS",
        "a kernel choice",
        value,
        Kernels::Vlmbench,
        &KERNEL_NAMES,
    )
}

fn name_of<T: Copy + PartialEq>(names: &[(&'static str, T)], choice: T) -> &'static str {
    names
        .iter()
        .find(|(_, c)| *c == choice)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// `value` of the environment variable `var` as one of `names` (unset or empty: `default`).
fn parse_choice<T: Copy>(
    var: &str,
    what: &str,
    value: Option<&str>,
    default: T,
    names: &[(&str, T)],
) -> std::result::Result<T, String> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => names
            .iter()
            .find(|(n, _)| *n == v)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let quoted: Vec<String> = names.iter().map(|(n, _)| format!("`{n}`")).collect();
                let (last, rest) = quoted.split_last().expect("choices have names");
                format!(
                    "{var}={v:?} is not {what}: use {} or {last}",
                    rest.join(", ")
                )
            }),
    }
}

/// How the CPU's 4-bit one-row products take their activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuActivations {
    /// The default: float32 activations, results those of MLX's kernels to float32 rounding.
    Float32,
    /// Opt-in: activations rounded to 8-bit integers per block of 32 (as llama.cpp's Q8_1) and
    /// multiplied by integer instructions; the weights' own values are unchanged. Changes
    /// results by the activations' rounding (see `cpu_quant`'s tests for the stated bound).
    Int8,
}

const ACTIVATION_NAMES: [(&str, CpuActivations); 2] = [
    ("float32", CpuActivations::Float32),
    ("int8", CpuActivations::Int8),
];

impl CpuActivations {
    /// The `VLMBENCH_CPU_ACTIVATIONS` value that selects this choice.
    pub fn name(self) -> &'static str {
        name_of(&ACTIVATION_NAMES, self)
    }
}

/// The process's choice: `VLMBENCH_CPU_ACTIVATIONS` = `float32` (the default) or `int8`. Read
/// once.
pub fn cpu_activations_choice() -> Result<CpuActivations> {
    static CHOICE: OnceLock<std::result::Result<CpuActivations, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| {
            parse_activations(std::env::var("VLMBENCH_CPU_ACTIVATIONS").ok().as_deref())
        })
        .clone()
        .map_err(ModelError::Input)
}

fn parse_activations(value: Option<&str>) -> std::result::Result<CpuActivations, String> {
    parse_choice(
        "VLMBENCH_CPU_ACTIVATIONS",
        "a CPU activation type",
        value,
        CpuActivations::Float32,
        &ACTIVATION_NAMES,
    )
}

/// Reads every choice (`VLMBENCH_KERNELS`, `VLMBENCH_PREFILL`, `VLMBENCH_CPU_ACTIVATIONS`), so a
/// bad value is an error when a model loads, even for models and devices whose paths never
/// consult it.
pub fn check_choices() -> Result<()> {
    kernels_choice()?;
    prefill_choice()?;
    cpu_activations_choice()?;
    Ok(())
}

/// True when the loaded libmlx is the CUDA one.
fn cuda_backend() -> bool {
    static CUDA: OnceLock<bool> = OnceLock::new();
    *CUDA.get_or_init(|| crate::runtime::backend() == "cuda")
}

/// The stream vlmbench's own paths run on, when they apply: the current stream is a CUDA GPU
/// stream and the choice includes `wanted`. `None` means: use MLX's stock operations.
fn vlmbench_stream(wanted: Kernels) -> Result<Option<Stream>> {
    if !cuda_backend() || kernels_choice()? < wanted {
        return Ok(None);
    }
    let stream = Stream::thread_local_or_default();
    Ok(qgemv::stream_is_gpu(&stream).then_some(stream))
}

/// An MLX affine-quantized weight `W` `[N, K * bits / 32]` (uint32) with its `scales` and
/// `biases` `[N, K / group_size]`, borrowed: the operands of every quantized product here.
#[derive(Clone, Copy)]
pub struct QuantizedOperands<'a> {
    pub w: &'a Array,
    pub scales: &'a Array,
    pub biases: &'a Array,
    pub bits: i32,
    pub group_size: i32,
}

/// `x @ W^T` for a quantized `W` by vlmbench's own kernels when they apply: on a CUDA GPU the
/// 4-bit GEMV (one activation row, groups of 64, see `vlmbench_stream`) or, for long prompts
/// with 16-bit scales, a dequantized product ([`Prefill::Dequant`]); on the CPU the 4- and 8-bit
/// products of [`cpu_quant`] (float32 operands). Otherwise MLX's product, padded where its CUDA
/// GEMM is wrong ([`short_inner`]); `None` leaves the product to MLX as it is.
pub fn try_quantized_matmul(x: &Array, q: QuantizedOperands) -> Result<Option<Array>> {
    if let Some(stream) = vlmbench_stream(Kernels::Gemv)? {
        let half = matches!(q.scales.dtype(), Dtype::Bfloat16 | Dtype::Float16);
        // Only inside a paced forward pass: unpaced, the dequantized weights of every layer in
        // flight would pile up (36 GB instead of 24 for the 31B shapes). The choice is read
        // first, so a bad VLMBENCH_PREFILL is an error for models without a pacer too.
        if half && prefill_for(rows(x))? == Prefill::Dequant && PrefillPacer::pacing() {
            return Ok(Some(dequantized_matmul(x, q)?));
        }
        if qgemv::supports(x, q) {
            return Ok(Some(qgemv::qgemv4(x, q, &stream)?));
        }
    } else if cpu::own_cpu_path()? {
        return cpu::quantized_matmul(x, q);
    }
    // MLX's product, whatever the kernel choice: padded where its CUDA GEMM would be wrong.
    Ok(short_inner::padded_if_needed(x, q)?)
}

/// `x @ W^T` with `W` dequantized to the scales' dtype first: a dense product (cuBLAS on a GPU).
pub fn dequantized_matmul(
    x: &Array,
    q: QuantizedOperands,
) -> std::result::Result<Array, mlx_rs::error::Exception> {
    let dense = mlx_rs::ops::dequantize(q.w, q.scales, q.biases, q.group_size, q.bits)?;
    x.matmul(dense.t())
}

/// Rows of activations (all axes but the last) in a product `x @ W^T`.
fn rows(x: &Array) -> i32 {
    x.shape()[..x.ndim().saturating_sub(1)].iter().product()
}

/// How a prompt of at least [`PREFILL_MIN_ROWS`] tokens runs its decoder layers
/// (`VLMBENCH_PREFILL`; shorter prompts always run as `Mlx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefill {
    /// MLX's quantized GEMM, every layer's graph submitted at once (the default off CUDA).
    Mlx,
    /// As `Mlx`, with [`PrefillPacer`] keeping about two steps in flight (less memory).
    Paced,
    /// Paced, and on a CUDA GPU each 4-bit product with 16-bit scales in a paced forward pass
    /// (Gemma 4's; other models keep MLX's GEMM) dequantizes its weight and multiplies densely
    /// (cuBLAS); the default on CUDA. With MLX 0.32.2, MLX's quantized GEMM runs well below
    /// cuBLAS at the 31B prefill shapes even with the dequantization counted
    /// (charts/gpu/h100-paced). float32 products stay MLX's: cuBLAS would run them as TF32,
    /// less precise than asked for.
    Dequant,
}

/// Prompts shorter than this run as [`Prefill::Mlx`] whatever the choice.
pub const PREFILL_MIN_ROWS: i32 = 256;

/// The process's choice: `VLMBENCH_PREFILL` = `mlx`, `paced` or `dequant` (the default on a
/// CUDA build, `mlx` elsewhere). Read once.
pub fn prefill_choice() -> Result<Prefill> {
    static CHOICE: OnceLock<std::result::Result<Prefill, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| {
            let default = if cuda_backend() {
                Prefill::Dequant
            } else {
                Prefill::Mlx
            };
            parse_prefill(std::env::var("VLMBENCH_PREFILL").ok().as_deref(), default)
        })
        .clone()
        .map_err(ModelError::Input)
}

const PREFILL_NAMES: [(&str, Prefill); 3] = [
    ("mlx", Prefill::Mlx),
    ("paced", Prefill::Paced),
    ("dequant", Prefill::Dequant),
];

impl Prefill {
    /// The `VLMBENCH_PREFILL` value that selects this choice.
    pub fn name(self) -> &'static str {
        name_of(&PREFILL_NAMES, self)
    }
}

fn parse_prefill(value: Option<&str>, default: Prefill) -> std::result::Result<Prefill, String> {
    parse_choice(
        "VLMBENCH_PREFILL",
        "a prefill choice",
        value,
        default,
        &PREFILL_NAMES,
    )
}

/// The prefill choice for a forward pass over `rows` positions (read even for short ones, so a
/// bad `VLMBENCH_PREFILL` is an error whatever the prompt).
fn prefill_for(rows: i32) -> Result<Prefill> {
    let choice = prefill_choice()?;
    Ok(if rows >= PREFILL_MIN_ROWS {
        choice
    } else {
        Prefill::Mlx
    })
}

/// Keeps a long forward pass to about two steps in flight ([`Prefill::Paced`] and
/// [`Prefill::Dequant`]); a step is a decoder layer's attention block or one of its
/// feed-forward products, or one vision encoder layer. MLX lets the host run up to ten command
/// graphs ahead of the device and frees a graph's temporaries only when it completes; on an H100
/// at 512 tokens of the 31B shapes that held 5 GB beyond the 18.7 GB of weights with MLX's GEMM,
/// 17 GB with dequantized weights (charts/gpu/h100-prefill). Each step's output is submitted,
/// then the previous step's is waited for, so the device always has the next step queued while
/// the host builds the one after.
pub struct PrefillPacer {
    on: bool,
    previous: Option<Array>,
}

thread_local! {
    /// How many pacers that are on this thread holds (models without one never dequantize).
    static PACERS_ON: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl PrefillPacer {
    /// A pacer for a forward pass over `rows` positions.
    pub fn new(rows: i32) -> Result<Self> {
        let on = prefill_for(rows)? != Prefill::Mlx;
        Ok(Self::with(on))
    }

    fn with(on: bool) -> Self {
        if on {
            PACERS_ON.with(|n| n.set(n.get() + 1));
        }
        Self { on, previous: None }
    }

    /// Whether this thread is inside a paced forward pass.
    fn pacing() -> bool {
        PACERS_ON.with(|n| n.get() > 0)
    }

    /// Called with each step's output, in order.
    pub fn step(&mut self, h: &Array) -> Result<()> {
        if self.on {
            mlx_rs::transforms::async_eval([h])?;
            if let Some(previous) = self.previous.replace(h.clone()) {
                mlx_rs::transforms::eval([&previous])?;
            }
        }
        Ok(())
    }
}

impl Drop for PrefillPacer {
    fn drop(&mut self) {
        if self.on {
            PACERS_ON.with(|n| n.set(n.get() - 1));
        }
    }
}

/// Whether the fused elementwise chains apply (see `vlmbench_stream`).
pub fn fuse_elementwise() -> Result<bool> {
    Ok(vlmbench_stream(Kernels::Vlmbench)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_choice_defaults_to_vlmbench_accepts_the_three_names_and_rejects_others_by_name() {
        assert_eq!(parse_kernels(None), Ok(Kernels::Vlmbench));
        assert_eq!(parse_kernels(Some("vlmbench")), Ok(Kernels::Vlmbench));
        assert_eq!(parse_kernels(Some("mlx")), Ok(Kernels::Mlx));
        assert_eq!(parse_kernels(Some("gemv")), Ok(Kernels::Gemv));
        let err = parse_kernels(Some("cublas")).unwrap_err();
        assert!(
            err.contains("VLMBENCH_KERNELS=\"cublas\"")
                && err.contains("`mlx`, `gemv` or `vlmbench`"),
            "{err}"
        );
    }

    #[test]
    fn pacing_lasts_while_a_pacer_that_is_on_lives() {
        assert!(!PrefillPacer::pacing());
        let off = PrefillPacer::with(false);
        assert!(!PrefillPacer::pacing());
        let outer = PrefillPacer::with(true);
        let inner = PrefillPacer::with(true);
        drop(inner);
        assert!(PrefillPacer::pacing());
        drop(outer);
        drop(off);
        assert!(!PrefillPacer::pacing());
    }

    #[test]
    fn every_choice_is_named_by_the_value_that_selects_it() {
        for k in [Kernels::Mlx, Kernels::Gemv, Kernels::Vlmbench] {
            assert_eq!(parse_kernels(Some(k.name())), Ok(k));
        }
        for p in [Prefill::Mlx, Prefill::Paced, Prefill::Dequant] {
            assert_eq!(parse_prefill(Some(p.name()), Prefill::Mlx), Ok(p));
        }
    }

    #[test]
    fn prefill_choice_takes_the_default_when_unset_accepts_the_three_names_and_rejects_others() {
        for default in [Prefill::Mlx, Prefill::Dequant] {
            assert_eq!(parse_prefill(None, default), Ok(default));
            assert_eq!(parse_prefill(Some(""), default), Ok(default));
        }
        let d = Prefill::Dequant;
        assert_eq!(parse_prefill(Some("mlx"), d), Ok(Prefill::Mlx));
        assert_eq!(parse_prefill(Some("paced"), d), Ok(Prefill::Paced));
        assert_eq!(
            parse_prefill(Some("dequant"), Prefill::Mlx),
            Ok(Prefill::Dequant)
        );
        let err = parse_prefill(Some("cublas"), d).unwrap_err();
        assert!(
            err.contains("VLMBENCH_PREFILL=\"cublas\"")
                && err.contains("`mlx`, `paced` or `dequant`"),
            "{err}"
        );
    }

    #[test]
    fn cpu_activations_default_to_float32_and_a_bad_name_lists_the_two() {
        assert_eq!(parse_activations(None), Ok(CpuActivations::Float32));
        assert_eq!(parse_activations(Some("")), Ok(CpuActivations::Float32));
        assert_eq!(parse_activations(Some("int8")), Ok(CpuActivations::Int8));
        assert_eq!(
            parse_activations(Some("float32")),
            Ok(CpuActivations::Float32)
        );
        let err = parse_activations(Some("int4")).unwrap_err();
        assert!(
            err.contains("VLMBENCH_CPU_ACTIVATIONS=\"int4\"")
                && err.contains("use `float32` or `int8`"),
            "{err}"
        );
    }
}
