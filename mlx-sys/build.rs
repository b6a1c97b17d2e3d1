//! Builds mlx-c 0.7.0 (from the registry's mlx-sys 0.7.0 package) against the official MLX 0.32.2
//! wheel and generates its bindings, so that the unchanged mlx-rs 0.33 builds on Linux and macOS.
//! ../design notes: the registry build script links Apple frameworks, clones MLX from GitHub at
//! build time and leaves f16/bf16 undeclared off ARM; this one does none of that.
//!
//! Published to dependents (as DEP_MLX_*): RUNTIME_LIB_DIR (where libmlx is loaded from at run time:
//! their build scripts add it as rpath), BACKEND, VERSION.

#[path = "build/mlx_c.rs"]
mod mlx_c;
#[path = "build/wheel.rs"]
mod wheel;

use std::env;
use std::path::{Path, PathBuf};

use wheel::{Backend, MlxInstall, MLX_VERSION};

/// One clear line, then a non-zero exit: Cargo shows it under the build script's stderr.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

fn main() {
    for var in [
        "MLX_DIR",
        "VLMBENCH_MLX_BACKEND",
        "VLMBENCH_CACHE_DIR",
        "VLMBENCH_PYTHON",
        "XDG_CACHE_HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=native");

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let native = manifest_dir.join("native");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();

    let backend = Backend::choose(
        env::var("VLMBENCH_MLX_BACKEND").ok().as_deref(),
        env::var_os("CARGO_FEATURE_CUDA").is_some(),
        &target_os,
    )
    .unwrap_or_else(|e| fail(&e));
    if backend == Backend::Cuda && target_os != "linux" {
        fail("the CUDA backend exists for Linux only: drop the `cuda` feature / VLMBENCH_MLX_BACKEND=cuda");
    }
    // The CUDA wheel's CMake package wants a CUDA toolkit at configure time, but its C++ API and
    // library name are the CPU wheel's: compile and link against the CPU wheel, load the CUDA one.
    let mlx_dir = env::var_os("MLX_DIR").map(PathBuf::from);
    let locate = |backend: Backend| -> MlxInstall {
        let found = match &mlx_dir {
            Some(dir) => wheel::from_mlx_dir(dir),
            None => wheel::cache_root(
                env::var_os("VLMBENCH_CACHE_DIR").map(PathBuf::from),
                env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
                env::var_os("HOME").map(PathBuf::from),
            )
            .and_then(|cache| {
                let python = env::var("VLMBENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
                wheel::cached_wheel(backend, &cache, &python)
            }),
        };
        found.unwrap_or_else(|e| fail(&e))
    };
    let build_install = locate(if backend == Backend::Cuda {
        Backend::Cpu
    } else {
        backend
    });
    let runtime_install = if backend == Backend::Cuda && mlx_dir.is_none() {
        locate(Backend::Cuda)
    } else {
        build_install.clone()
    };

    let mlx_c = mlx_c::prepare(&out_dir, &native.join("half.h"));
    let lib_dir = build_mlx_c(&mlx_c, &build_install, &native.join("format_shim.h"));
    // vlmbench's precompiled-kernel shim (native/precompiled_kernel.cpp): C++ over MLX's own API,
    // with mlx-c's private handle conversions.
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .file(native.join("precompiled_kernel.cpp"))
        .include(&mlx_c)
        .include(build_install.root.join("mlx/include"))
        .flag("-include")
        .flag(native.join("format_shim.h").to_string_lossy().as_ref())
        .warnings(false)
        .compile("vlmbench_precompiled_kernel");
    if target_os != "macos" {
        cc::Build::new()
            .file(native.join("mach_time.c"))
            .compile("vlmbench_mach_time");
    }
    generate_bindings(&mlx_c, &out_dir);

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=mlxc");
    println!(
        "cargo:rustc-link-search=native={}",
        build_install.lib_dir().display()
    );
    println!("cargo:rustc-link-lib=dylib=mlx");
    println!(
        "cargo:rustc-link-lib=dylib={}",
        if target_os == "macos" {
            "c++"
        } else {
            "stdc++"
        }
    );
    println!(
        "cargo::metadata=runtime_lib_dir={}",
        runtime_install.lib_dir().display()
    );
    // Our own tests (tests/build_errors.rs) load nothing from libmlx, but give them the rpath anyway.
    println!(
        "cargo:rustc-link-arg-tests=-Wl,-rpath,{}",
        runtime_install.lib_dir().display()
    );
    println!("cargo::metadata=backend={}", backend.name());
    println!(
        "cargo:rustc-env=VLMBENCH_MLX_BUILD_WHEEL={}",
        build_install.root.display()
    );
    println!("cargo::metadata=version={MLX_VERSION}");
}

/// Configures and builds mlx-c as a static library against the wheel's CMake package; returns the
/// directory holding `libmlxc.a`.
fn build_mlx_c(mlx_c: &Path, mlx: &MlxInstall, format_shim: &Path) -> PathBuf {
    let dst = cmake::Config::new(mlx_c)
        .profile("Release")
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("MLX_DIR", mlx.cmake_dir())
        .cxxflag(format!("-include {}", format_shim.display()))
        .build();
    ["lib", "lib64", "build"]
        .into_iter()
        .map(|sub| dst.join(sub))
        .find(|dir| dir.join("libmlxc.a").is_file())
        .unwrap_or_else(|| {
            fail(&format!(
                "CMake finished but left no libmlxc.a under {}",
                dst.display()
            ))
        })
}

fn generate_bindings(mlx_c: &Path, out_dir: &Path) {
    let header_dir = mlx_c.join("mlx/c");
    let mut headers: Vec<PathBuf> = std::fs::read_dir(&header_dir)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", header_dir.display())))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "h"))
        .collect();
    headers.sort();
    let builder = headers.iter().fold(
        bindgen::Builder::default()
            .rust_target("1.73.0".parse().expect("rust-version"))
            .clang_arg(format!("-I{}", mlx_c.display()))
            .blocklist_function("malloc")
            .blocklist_function("realloc")
            // mlx-rs wants a Default-able newtype for float16_t, the same on every target.
            .blocklist_type("float16_t")
            .raw_line("#[repr(transparent)]")
            .raw_line("#[derive(Debug, Default, Copy, Clone, PartialEq)]")
            .raw_line("pub struct float16_t(pub u16);"),
        |builder, header| builder.header(header.to_string_lossy()),
    );
    let bindings = builder.generate().unwrap_or_else(|e| {
        fail(&format!(
            "bindgen could not read the mlx-c headers ({e}); is libclang-dev installed?"
        ))
    });
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write the bindings: {e}")));
}
