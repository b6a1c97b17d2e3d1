//! Raw bindings to mlx-c 0.7.0, generated at build time against MLX 0.32.2 (see `build.rs`).
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// vlmbench's shim over MLX's `fast::precompiled_cuda_kernel` (`native/precompiled_kernel.cpp`).
pub mod precompiled {
    use super::{mlx_array, mlx_dtype, mlx_stream};
    use std::ffi::c_char;

    /// A registered PTX kernel (opaque).
    #[repr(C)]
    pub struct vlmbench_kernel {
        _private: [u8; 0],
    }

    extern "C" {
        /// Registers the PTX entry `name` of module `ptx`; NULL (message in `err`) on failure.
        pub fn vlmbench_kernel_new(
            name: *const c_char,
            ptx: *const c_char,
            ptx_len: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut vlmbench_kernel;
        /// Whether MLX loads the kernel from its PTX cache (cheap launches).
        pub fn vlmbench_kernel_is_cached(kernel: *const vlmbench_kernel) -> bool;
        /// Launches `kernel`; writes `n_outputs` arrays to `outputs`; 0 on success.
        pub fn vlmbench_kernel_apply(
            kernel: *const vlmbench_kernel,
            inputs: *const mlx_array,
            n_inputs: usize,
            shapes: *const i32,
            ndims: *const usize,
            dtypes: *const mlx_dtype,
            n_outputs: usize,
            scalars: *const i32,
            n_scalars: usize,
            grid_x: i32,
            block_x: i32,
            stream: mlx_stream,
            outputs: *mut mlx_array,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
    }
}

/// Where the dynamic loader found libmlx in this process: `dladdr` on one of libmlx's own symbols,
/// which Linux and macOS both have (macOS has no /proc/self/maps).
pub mod loaded {
    use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    /// `mlx::core::default_device()`: one mangled name in every MLX 0.32.2 wheel, as libstdc++ and
    /// libc++ mangle it alike (tests/macos_wheel.rs checks that the macOS library exports it).
    pub const ANCHOR_SYMBOL: &CStr = c"_ZN3mlx4core14default_deviceEv";

    #[repr(C)]
    struct DlInfo {
        fname: *const c_char,
        fbase: *mut c_void,
        sname: *const c_char,
        saddr: *mut c_void,
    }

    extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    }

    #[cfg(target_os = "macos")]
    const RTLD_DEFAULT: *mut c_void = -2isize as *mut c_void;
    #[cfg(not(target_os = "macos"))]
    const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

    /// The file libmlx was loaded from; None if this process has not loaded it.
    pub fn libmlx_path() -> Option<PathBuf> {
        // SAFETY: dlsym and dladdr only read the symbol name and write `info`; the file name
        // they return stays valid while the library is loaded, and it is copied at once.
        unsafe {
            let address = dlsym(RTLD_DEFAULT, ANCHOR_SYMBOL.as_ptr());
            if address.is_null() {
                return None;
            }
            let mut info = std::mem::zeroed::<DlInfo>();
            if dladdr(address, &mut info) == 0 || info.fname.is_null() {
                return None;
            }
            let name = CStr::from_ptr(info.fname).to_bytes();
            Some(PathBuf::from(OsStr::from_bytes(name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::path::Path;

    /// This very test binary starts only if its rpath leads to libmlx: it links mlx-c, which needs
    /// libmlx, so the build script's rpath must reach the library's unit tests (on a Mac, too).
    #[test]
    fn the_unit_test_binary_loads_libmlx_from_the_wheel_through_its_rpath() {
        let version = unsafe {
            let mut s = super::mlx_string_new();
            assert_eq!(super::mlx_version(&mut s), 0);
            let text = CStr::from_ptr(super::mlx_string_data(s))
                .to_string_lossy()
                .into_owned();
            super::mlx_string_free(s);
            text
        };
        assert_eq!(version, "0.32.2");
        let path = super::loaded::libmlx_path().expect("libmlx is loaded");
        let expected = Path::new(env!("VLMBENCH_MLX_RUNTIME_LIB_DIR"));
        assert_eq!(
            path.parent().map(|p| p.canonicalize().unwrap()),
            Some(expected.canonicalize().unwrap()),
            "{}",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(name == "libmlx.so" || name == "libmlx.dylib", "{name}");
    }
}
