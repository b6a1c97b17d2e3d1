//! vlmbench's CUDA kernels compiled ahead of time: PTX files built from `*.cu` by
//! tools/gpu/build-ptx.py, registered with MLX through mlx-sys's shim over
//! `fast::precompiled_cuda_kernel`, so no process runs NVRTC for them and a launch costs MLX about
//! what one of its own kernels costs (see mlx-sys/native/precompiled_kernel.cpp).
//!
//! A PTX file holds one module per instantiation: `//@kernel <variant> <dtype> <entry symbol>`,
//! then the module's text, after a `// source-sha256 <hex>` line naming the source it came from.

use std::ffi::{c_char, CStr, CString};

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};
use mlx_sys::precompiled as ffi;

/// The dtypes every kernel is instantiated for, as build-ptx.py names them.
pub const DTYPES: [(Dtype, &str); 3] = [
    (Dtype::Bfloat16, "bfloat16"),
    (Dtype::Float16, "float16"),
    (Dtype::Float32, "float32"),
];

pub fn dtype_name(dtype: Dtype) -> Option<&'static str> {
    DTYPES.iter().find(|(d, _)| *d == dtype).map(|(_, n)| *n)
}

/// One module of a PTX file.
#[derive(Debug, PartialEq)]
pub struct Section<'a> {
    pub variant: &'a str,
    pub dtype: &'a str,
    pub symbol: &'a str,
    pub ptx: &'a str,
}

pub fn sections(ptx: &str) -> Vec<Section<'_>> {
    const MARK: &str = "//@kernel ";
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(MARK) {
        let header_end = rest[at..].find('\n').map_or(rest.len(), |i| at + i + 1);
        let mut fields = rest[at + MARK.len()..header_end].split_whitespace();
        let body_end = rest[header_end..]
            .find(MARK)
            .map_or(rest.len(), |i| header_end + i);
        if let (Some(variant), Some(dtype), Some(symbol)) =
            (fields.next(), fields.next(), fields.next())
        {
            out.push(Section {
                variant,
                dtype,
                symbol,
                ptx: &rest[header_end..body_end],
            });
        }
        rest = &rest[body_end..];
    }
    out
}

/// The sha256 a PTX file records for its source.
pub fn recorded_source_sha256(ptx: &str) -> Option<&str> {
    ptx.lines()
        .find_map(|line| line.strip_prefix("// source-sha256 "))
}

/// One registered kernel of the shim.
pub struct Kernel(*mut ffi::vlmbench_kernel);
// SAFETY: the shim's kernel object is immutable after registration; MLX launches it from any thread.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

/// Every module of one PTX file, registered: `(variant, dtype, kernel)`.
pub struct Registry {
    kernels: Vec<(&'static str, &'static str, Kernel)>,
}

impl Registry {
    /// Registers every module of `ptx` (the file `file`, for messages).
    pub fn new(file: &str, ptx: &'static str) -> Result<Registry, String> {
        let kernels = sections(ptx)
            .into_iter()
            .map(|s| Ok((s.variant, s.dtype, register(file, &s)?)))
            .collect::<Result<_, String>>()?;
        Ok(Registry { kernels })
    }

    /// The `variant` kernel for `dtype` (a few entries: a scan, no allocation per launch).
    pub fn get(&self, variant: &str, dtype: Dtype) -> Result<&Kernel, Exception> {
        let name = dtype_name(dtype);
        self.kernels
            .iter()
            .find(|(v, d, _)| *v == variant && Some(*d) == name)
            .map(|(_, _, k)| k)
            .ok_or_else(|| {
                Exception::custom(format!("no precompiled {variant} kernel for {dtype:?}"))
            })
    }

    /// Whether MLX loads these kernels from its PTX cache (each launch then hashes a short tag,
    /// otherwise the whole PTX text).
    pub fn launches_are_cheap(&self) -> bool {
        // SAFETY: registered kernels live for the process.
        self.kernels
            .iter()
            .all(|(_, _, k)| unsafe { ffi::vlmbench_kernel_is_cached(k.0) })
    }
}

fn register(file: &str, section: &Section) -> Result<Kernel, String> {
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
            "cannot register the kernel {} of {file}: {}",
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

/// An output of a launch.
pub struct OutputSpec {
    pub shape: Vec<i32>,
    pub dtype: Dtype,
}

impl Kernel {
    /// Launches over `grid_x` threads in blocks of `block_x`. Arguments, in the kernel's order:
    /// the inputs' data (row-contiguous; MLX copies strided views first), the outputs', then the
    /// `int` `scalars`. `what` names the operation in errors.
    pub fn launch(
        &self,
        inputs: &[&Array],
        outputs: &[OutputSpec],
        scalars: &[i32],
        (grid_x, block_x): (i32, i32),
        stream: &Stream,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<Array>, Exception> {
        let handles: Vec<mlx_sys::mlx_array> = inputs.iter().map(|a| a.as_ptr()).collect();
        let shapes: Vec<i32> = outputs
            .iter()
            .flat_map(|o| o.shape.iter().copied())
            .collect();
        let ndims: Vec<usize> = outputs.iter().map(|o| o.shape.len()).collect();
        let dtypes: Vec<mlx_sys::mlx_dtype> = outputs.iter().map(|o| o.dtype.into()).collect();
        let mut results = vec![
            mlx_sys::mlx_array {
                ctx: std::ptr::null_mut()
            };
            outputs.len()
        ];
        let mut err = [0 as c_char; 512];
        // SAFETY: every pointer outlives the call; the shim fills `results` on success only.
        let status = unsafe {
            ffi::vlmbench_kernel_apply(
                self.0,
                handles.as_ptr(),
                handles.len(),
                shapes.as_ptr(),
                ndims.as_ptr(),
                dtypes.as_ptr(),
                outputs.len(),
                scalars.as_ptr(),
                scalars.len(),
                grid_x,
                block_x,
                stream.as_ptr(),
                results.as_mut_ptr(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if status != 0 {
            return Err(Exception::custom(format!(
                "vlmbench's {} failed: {} (VLMBENCH_KERNELS=mlx selects MLX's stock kernels)",
                what(),
                message(&err)
            )));
        }
        // SAFETY: each handle is a new array the shim created for us.
        Ok(results
            .into_iter()
            .map(|a| unsafe { Array::from_ptr(a) })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The checks every committed PTX file must pass: built from the current source, one complete
    /// module per `(variant, dtype)`, each defining exactly the entry it is registered under.
    /// `sources`: the .cu file, then the headers in build-ptx.py's order.
    pub fn check_ptx_file(ptx: &str, sources: &[&str], variants: &[&str]) {
        let digest = format!("{:x}", Sha256::digest(sources.concat().as_bytes()));
        assert_eq!(
            recorded_source_sha256(ptx),
            Some(digest.as_str()),
            "the .cu source changed since its .ptx was built: run `python3 tools/gpu/build-ptx.py`"
        );
        let found = sections(ptx);
        assert_eq!(found.len(), variants.len() * DTYPES.len());
        for variant in variants {
            for (_, dtype) in DTYPES {
                let s = found
                    .iter()
                    .find(|s| s.variant == *variant && s.dtype == dtype)
                    .unwrap_or_else(|| panic!("no {variant} {dtype} module"));
                assert!(
                    s.ptx.contains(".version") && s.ptx.contains(".target"),
                    "{}",
                    s.symbol
                );
                assert!(
                    s.ptx.contains(&format!(".entry {}(", s.symbol)),
                    "{}",
                    s.symbol
                );
                assert_eq!(s.ptx.matches(".entry ").count(), 1, "{}", s.symbol);
            }
        }
    }

    #[test]
    fn sections_split_at_each_kernel_header() {
        let text = "// source-sha256 ab\n//@kernel 1 bfloat16 a\n.version 9\nA\n//@kernel 2 float32 b\nB\n";
        assert_eq!(recorded_source_sha256(text), Some("ab"));
        assert_eq!(
            sections(text),
            vec![
                Section {
                    variant: "1",
                    dtype: "bfloat16",
                    symbol: "a",
                    ptx: ".version 9\nA\n"
                },
                Section {
                    variant: "2",
                    dtype: "float32",
                    symbol: "b",
                    ptx: "B\n"
                },
            ]
        );
    }
}
