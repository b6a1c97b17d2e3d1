//! Builds mlx-c 0.7.0 (from the registry's mlx-sys 0.7.0 package) against the official MLX 0.32.2
//! wheel and generates its bindings, so that the unchanged mlx-rs 0.33 builds on Linux and macOS.
//! ../design notes: the registry build script links Apple frameworks, clones MLX from GitHub at
//! build time and leaves f16/bf16 undeclared off ARM; this one does none of that.
//!
//! Published to dependents (as DEP_MLX_*): RUNTIME_LIB_DIR (where libmlx is loaded from at run time:
//! their build scripts add it as rpath), BACKEND, VERSION.

#[path = "build/link.rs"]
mod link;
#[path = "build/mlx_c.rs"]
mod mlx_c;
#[path = "build/wheel.rs"]
mod wheel;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wheel::{Backend, MlxInstall, Tool, WheelChoice, MLX_VERSION};

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
        "MACOSX_DEPLOYMENT_TARGET",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=native");

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let native = manifest_dir.join("native");
    let target = env::var("TARGET").unwrap_or_default();
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // The machine running this script, for install hints (the target may be another).
    let host_os = env::consts::OS;

    let backend = Backend::choose(
        env::var("VLMBENCH_MLX_BACKEND").ok().as_deref(),
        env::var_os("CARGO_FEATURE_CUDA").is_some(),
        &target_os,
    )
    .unwrap_or_else(|e| fail(&e));
    let deployment_target = env::var("MACOSX_DEPLOYMENT_TARGET").ok();
    let choose = |backend: Backend| -> WheelChoice {
        wheel::choose_wheel(backend, &target, deployment_target.as_deref())
            .unwrap_or_else(|e| fail(&e))
    };
    let runtime_wheel = choose(backend);
    // The CUDA wheel's CMake package wants a CUDA toolkit at configure time, but its C++ API and
    // library name are the CPU wheel's: compile and link against the CPU wheel, load the CUDA one.
    let build_wheel = if backend == Backend::Cuda {
        choose(Backend::Cpu)
    } else {
        runtime_wheel.clone()
    };
    if let Some(version) = build_wheel.macos_deployment_target {
        // cc and CMake read it (CMake to initialize CMAKE_OSX_DEPLOYMENT_TARGET), as rustc does.
        env::set_var("MACOSX_DEPLOYMENT_TARGET", version.to_string());
    }
    let mlx_dir = env::var_os("MLX_DIR").map(PathBuf::from);
    let locate = |wheel: &WheelChoice| -> MlxInstall {
        let found = match &mlx_dir {
            Some(dir) => wheel::from_mlx_dir(dir, wheel),
            None => wheel::cache_root(
                env::var_os("VLMBENCH_CACHE_DIR").map(PathBuf::from),
                env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
                env::var_os("HOME").map(PathBuf::from),
            )
            .and_then(|cache| {
                let python = env::var("VLMBENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
                wheel::cached_wheel(wheel, &cache, &python, host_os)
            }),
        };
        found.unwrap_or_else(|e| fail(&e))
    };
    let build_install = locate(&build_wheel);
    let runtime_install = if backend == Backend::Cuda && mlx_dir.is_none() {
        locate(&runtime_wheel)
    } else {
        build_install.clone()
    };

    let mlx_c = mlx_c::prepare(&out_dir, &native.join("half.h"));
    let lib_dir = build_mlx_c(
        &mlx_c,
        &build_install,
        &build_wheel,
        host_os,
        &native.join("format_shim.h"),
    );
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
    generate_bindings(&mlx_c, &out_dir, host_os);

    let link = link::Link {
        target_os: &target_os,
        mlxc_dir: &lib_dir,
        build_lib_dir: &build_install.lib_dir(),
        runtime_lib_dir: &runtime_install.lib_dir(),
        macos_deployment_target: build_wheel.macos_deployment_target,
    };
    for line in link::directives(&link) {
        println!("{line}");
    }
    println!("cargo::metadata=backend={}", backend.name());
    println!("cargo::metadata=version={MLX_VERSION}");
    // For mlx-sys's own tests: the wheel linked, where libmlx is loaded from, and the mlx-c static
    // library whose needs tests/macos_wheel.rs checks against the macOS wheel.
    println!(
        "cargo:rustc-env=VLMBENCH_MLX_BUILD_WHEEL={}",
        build_install.root.display()
    );
    println!(
        "cargo:rustc-env=VLMBENCH_MLX_RUNTIME_LIB_DIR={}",
        runtime_install.lib_dir().display()
    );
    println!(
        "cargo:rustc-env=VLMBENCH_MLXC_LIB_DIR={}",
        lib_dir.display()
    );
}

/// Configures and builds mlx-c as a static library against the wheel's CMake package; returns the
/// directory holding `libmlxc.a`.
fn build_mlx_c(
    mlx_c: &Path,
    mlx: &MlxInstall,
    wheel: &WheelChoice,
    host_os: &str,
    format_shim: &Path,
) -> PathBuf {
    let cmake = env::var("CMAKE").unwrap_or_else(|_| "cmake".to_owned());
    let runs = Command::new(&cmake)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        fail(&format!(
            "building mlx-c needs CMake, and `{cmake} --version` does not run: {}",
            wheel::install_hint(Tool::CMake, host_os)
        ));
    }
    let mut config = cmake::Config::new(mlx_c);
    config
        .profile("Release")
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("MLX_DIR", mlx.cmake_dir())
        .cxxflag(format!("-include {}", format_shim.display()));
    if let Some(version) = wheel.macos_deployment_target {
        config.define("CMAKE_OSX_DEPLOYMENT_TARGET", version.to_string());
    }
    let dst = config.build();
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

fn generate_bindings(mlx_c: &Path, out_dir: &Path, host_os: &str) {
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
            "bindgen could not read the mlx-c headers ({e}): {}",
            wheel::install_hint(Tool::Libclang, host_os)
        ))
    });
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write the bindings: {e}")));
}
