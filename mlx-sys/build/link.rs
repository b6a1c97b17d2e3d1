//! The lines mlx-sys's build script prints to link mlx-c and libmlx, as data, so that tests can
//! check them for every target without running a build for it.

use std::path::Path;

use crate::wheel::MacosVersion;

/// What the build found and chose.
pub struct Link<'a> {
    /// `CARGO_CFG_TARGET_OS`.
    pub target_os: &'a str,
    /// Where CMake left `libmlxc.a`.
    pub mlxc_dir: &'a Path,
    /// The `mlx/lib` of the wheel linked against.
    pub build_lib_dir: &'a Path,
    /// The `mlx/lib` libmlx is loaded from at run time (the CUDA wheel's with the `cuda` feature).
    pub runtime_lib_dir: &'a Path,
    /// macOS targets: the version C, C++ and Rust are built for.
    pub macos_deployment_target: Option<MacosVersion>,
}

/// The `cargo:` directives, in the order they are printed.
pub fn directives(link: &Link) -> Vec<String> {
    let runtime = link.runtime_lib_dir.display();
    let mut lines = vec![
        format!("cargo:rustc-link-search=native={}", link.mlxc_dir.display()),
        "cargo:rustc-link-lib=static=mlxc".to_owned(),
        format!(
            "cargo:rustc-link-search=native={}",
            link.build_lib_dir.display()
        ),
        "cargo:rustc-link-lib=dylib=mlx".to_owned(),
        format!(
            "cargo:rustc-link-lib=dylib={}",
            if link.target_os == "macos" {
                "c++"
            } else {
                "stdc++"
            }
        ),
        // Dependents' build scripts read it as DEP_MLX_RUNTIME_LIB_DIR and add it as their rpath
        // (a dependency's link arguments do not reach its dependents' binaries).
        format!("cargo::metadata=runtime_lib_dir={runtime}"),
        // Every target of this package, the library's own unit-test binary included. Apple's linker
        // records `@rpath/libmlx.dylib` even where nothing uses it (no --as-needed), so a test binary
        // without this rpath cannot start on a Mac; `rustc-link-arg-tests` misses the unit tests.
        format!("cargo:rustc-link-arg=-Wl,-rpath,{runtime}"),
    ];
    if let Some(version) = link.macos_deployment_target {
        // rustc reads it when it compiles and links this package's targets, as cc and CMake do.
        lines.push(format!(
            "cargo:rustc-env=MACOSX_DEPLOYMENT_TARGET={version}"
        ));
    }
    lines
}
