//! `qgemv4`: one activation row times one, two or three MLX affine 4-bit weights (group size 64)
//! in one CUDA launch. The kernels are `qgemv4.cu`, compiled ahead of time to `qgemv4.ptx`
//! (tools/gpu/build-ptx.py) and launched through MLX's `fast::precompiled_cuda_kernel` (mlx-sys's
//! shim), so no process compiles them and a launch costs MLX about what its own kernels cost.

use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};
use mlx_sys::precompiled as ffi;

/// Threads per block (4 warps: small blocks keep the k/v projections' few rows spread over
/// every SM) and output rows per warp, as qgemv4.cu is written.
const THREADS_PER_BLOCK: i32 = 128;
const ROWS_PER_WARP: i32 = 2;
pub const BITS: i32 = 4;
pub const GROUP_SIZE: i32 = 64;
/// The most matrices one launch multiplies (the q, k and v projections).
pub const MAX_MATRICES: usize = 3;

const PTX: &str = include_str!("qgemv4.ptx");
const DTYPES: [(Dtype, &str); 3] = [
    (Dtype::Bfloat16, "bfloat16"),
    (Dtype::Float16, "float16"),
    (Dtype::Float32, "float32"),
];

/// A PTX module of `qgemv4.ptx`: `//@kernel <matrix count> <dtype> <entry symbol>`, then its text.
#[derive(Debug, PartialEq)]
struct Section<'a> {
    matrices: usize,
    dtype: &'a str,
    symbol: &'a str,
    ptx: &'a str,
}

fn sections(ptx: &str) -> Vec<Section<'_>> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(at) = rest.find("//@kernel ") {
        let header_end = rest[at..].find('\n').map_or(rest.len(), |i| at + i + 1);
        let mut fields = rest[at + "//@kernel ".len()..header_end].split_whitespace();
        let body_end = rest[header_end..]
            .find("//@kernel ")
            .map_or(rest.len(), |i| header_end + i);
        if let (Some(m), Some(dtype), Some(symbol)) = (fields.next(), fields.next(), fields.next()) {
            out.push(Section {
                matrices: m.parse().unwrap_or(0),
                dtype,
                symbol,
                ptx: &rest[header_end..body_end],
            });
        }
        rest = &rest[body_end..];
    }
    out
}

/// One registered kernel of the shim.
struct Kernel(*mut ffi::vlmbench_kernel);
// SAFETY: the shim's kernel object is immutable after registration; MLX launches it from any thread.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

struct Registry {
    /// Indexed by `(matrices - 1) * 3 + dtype index`.
    kernels: Vec<Kernel>,
}

fn registry() -> Result<&'static Registry, Exception> {
    static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            let found = sections(PTX);
            let mut kernels = Vec::new();
            for matrices in 1..=MAX_MATRICES {
                for (_, dtype) in DTYPES {
                    let section = found
                        .iter()
                        .find(|s| s.matrices == matrices && s.dtype == dtype)
                        .ok_or_else(|| format!("qgemv4.ptx has no {matrices}-matrix {dtype} kernel"))?;
                    kernels.push(register(section)?);
                }
            }
            Ok(Registry { kernels })
        })
        .as_ref()
        .map_err(|e| Exception::custom(e.clone()))
}

fn register(section: &Section) -> Result<Kernel, String> {
    let symbol = CString::new(section.symbol).map_err(|e| e.to_string())?;
    let mut err = [0 as c_char; 512];
    // SAFETY: the strings outlive the call, which copies them; `err` is a writable buffer.
    let raw = unsafe {
        ffi::vlmbench_kernel_new(
            symbol.as_ptr(),
            section.ptx.as_ptr() as *const c_char,
            section.ptx.len(),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if raw.is_null() {
        return Err(format!(
            "cannot register vlmbench's GEMV kernel {}: {}",
            section.symbol,
            message(&err)
        ));
    }
    Ok(Kernel(raw))
}

fn message(err: &[c_char]) -> String {
    // SAFETY: the shim writes a NUL-terminated string (snprintf) into the zeroed buffer.
    unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether MLX loads vlmbench's kernels from its PTX cache (each launch then hashes a short tag;
/// otherwise the whole PTX text): `vlmbench kernels` reports it.
pub fn launches_are_cheap() -> Result<bool, Exception> {
    let registry = registry()?;
    // SAFETY: registered kernels live for the process.
    Ok(registry
        .kernels
        .iter()
        .all(|k| unsafe { ffi::vlmbench_kernel_is_cached(k.0) }))
}

/// One quantized weight of a [`qgemv4_many`] launch: `w` `[N, K/8]`, `scales`/`biases` `[N, K/64]`.
#[derive(Clone, Copy)]
pub struct Weight<'a> {
    pub w: &'a Array,
    pub scales: &'a Array,
    pub biases: &'a Array,
}

/// Whether [`qgemv4`] computes `x @ W^T` for these operands: one row of `K` activations in a
/// floating dtype shared with the scales, a 4-bit weight with groups of 64, `K % 64 == 0`.
pub fn supports(x: &Array, w: &Array, scales: &Array, bits: i32, group_size: i32) -> bool {
    let k = *x.shape().last().unwrap_or(&0);
    bits == BITS
        && group_size == GROUP_SIZE
        && k > 0
        && k % GROUP_SIZE == 0
        && x.size() as i32 == k
        && w.ndim() == 2
        && w.shape()[1] * 8 == k
        && w.dtype() == Dtype::Uint32
        && matches!(x.dtype(), Dtype::Bfloat16 | Dtype::Float16 | Dtype::Float32)
        && scales.dtype() == x.dtype()
}

/// `x @ W^T` for a weight `w` `[N, K/8]` with `scales`/`biases` `[N, K/64]`; `x` has `K`
/// elements in any leading shape (e.g. `[1, 1, K]`); the result has shape `[.., N]`.
/// Check [`supports`] first. Runs on `stream`, which must be a CUDA GPU stream.
pub fn qgemv4(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    stream: &Stream,
) -> Result<Array, Exception> {
    let weight = Weight { w, scales, biases };
    Ok(qgemv4_many(x, &[weight], stream)?.remove(0))
}

/// `x @ W_m^T` for up to [`MAX_MATRICES`] weights sharing `x`, in one launch (each weight
/// checked with [`supports`]); one result per weight, in order.
pub fn qgemv4_many(x: &Array, weights: &[Weight], stream: &Stream) -> Result<Vec<Array>, Exception> {
    assert!(
        (1..=MAX_MATRICES).contains(&weights.len()),
        "qgemv4_many takes 1 to {MAX_MATRICES} weights"
    );
    let dtype = x.dtype();
    let dtype_index = DTYPES
        .iter()
        .position(|(d, _)| *d == dtype)
        .expect("supports() checked the dtype");
    let kernel = &registry()?.kernels[(weights.len() - 1) * DTYPES.len() + dtype_index];
    let k = *x.shape().last().expect("supports() checked the shape");

    let mut inputs = vec![x.as_ptr()];
    let mut shapes = Vec::new();
    let mut ndims = Vec::new();
    let mut scalars = vec![k];
    let mut warps = 0;
    for weight in weights {
        inputs.extend([weight.w.as_ptr(), weight.scales.as_ptr(), weight.biases.as_ptr()]);
        let n = weight.w.shape()[0];
        shapes.extend_from_slice(&x.shape()[..x.ndim() - 1]);
        shapes.push(n);
        ndims.push(x.ndim());
        scalars.push(n);
        warps += (n + ROWS_PER_WARP - 1) / ROWS_PER_WARP;
    }
    let warps_per_block = THREADS_PER_BLOCK / 32;
    let grid = (warps + warps_per_block - 1) / warps_per_block * THREADS_PER_BLOCK;
    let dtypes = vec![dtype.into(); weights.len()];
    // SAFETY: null handles are filled by the shim on success; every pointer outlives the call.
    unsafe {
        let mut outputs = vec![mlx_sys::mlx_array { ctx: std::ptr::null_mut() }; weights.len()];
        let mut err = [0 as c_char; 512];
        let status = ffi::vlmbench_kernel_apply(
            kernel.0,
            inputs.as_ptr(),
            inputs.len(),
            shapes.as_ptr(),
            ndims.as_ptr(),
            dtypes.as_ptr(),
            weights.len(),
            scalars.as_ptr(),
            scalars.len(),
            grid,
            THREADS_PER_BLOCK,
            stream.as_ptr(),
            outputs.as_mut_ptr(),
            err.as_mut_ptr(),
            err.len(),
        );
        if status != 0 {
            return Err(Exception::custom(format!(
                "vlmbench's 4-bit GEMV kernel could not be applied to a {dtype:?} [{k}] x {} product: {} \
                 (VLMBENCH_KERNELS=mlx selects MLX's stock kernel)",
                weights
                    .iter()
                    .map(|w| format!("[{}, {k}]", w.w.shape()[0]))
                    .collect::<Vec<_>>()
                    .join(" + "),
                message(&err)
            )));
        }
        Ok(outputs.into_iter().map(|a| Array::from_ptr(a)).collect())
    }
}

/// Whether `stream` runs on a GPU.
pub fn stream_is_gpu(stream: &Stream) -> bool {
    // SAFETY: out-parameters over handles freed here.
    unsafe {
        let mut device = mlx_sys::mlx_device_new();
        let mut kind: mlx_sys::mlx_device_type = 0;
        let ok = mlx_sys::mlx_stream_get_device(&mut device, stream.as_ptr()) == 0
            && mlx_sys::mlx_device_get_type(&mut kind, device) == 0;
        mlx_sys::mlx_device_free(device);
        ok && kind == mlx_sys::mlx_device_type__MLX_GPU
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_committed_ptx_was_built_from_the_current_kernel_source() {
        let source = include_str!("qgemv4.cu");
        let digest = format!("{:x}", Sha256::digest(source.as_bytes()));
        let recorded = PTX
            .lines()
            .find_map(|line| line.strip_prefix("// source-sha256 "))
            .expect("qgemv4.ptx records its source's sha256");
        assert_eq!(
            recorded, digest,
            "qgemv4.cu changed since qgemv4.ptx was built: run `python3 tools/gpu/build-ptx.py`"
        );
    }

    #[test]
    fn the_ptx_holds_one_module_per_matrix_count_and_dtype() {
        let found = sections(PTX);
        assert_eq!(found.len(), MAX_MATRICES * DTYPES.len());
        for matrices in 1..=MAX_MATRICES {
            for (_, dtype) in DTYPES {
                let s = found
                    .iter()
                    .find(|s| s.matrices == matrices && s.dtype == dtype)
                    .unwrap_or_else(|| panic!("no {matrices}-matrix {dtype} module"));
                // A complete module that defines exactly the entry it is registered under.
                assert!(s.ptx.contains(".version") && s.ptx.contains(".target"), "{}", s.symbol);
                assert!(s.ptx.contains(&format!(".entry {}(", s.symbol)), "{}", s.symbol);
                assert_eq!(s.ptx.matches(".entry ").count(), 1, "{}", s.symbol);
            }
        }
    }

    #[test]
    fn sections_split_at_each_kernel_header() {
        let text = "// banner\n//@kernel 1 bfloat16 a\n.version 9\nA\n//@kernel 2 float32 b\nB\n";
        assert_eq!(
            sections(text),
            vec![
                Section { matrices: 1, dtype: "bfloat16", symbol: "a", ptx: ".version 9\nA\n" },
                Section { matrices: 2, dtype: "float32", symbol: "b", ptx: "B\n" },
            ]
        );
    }
}
