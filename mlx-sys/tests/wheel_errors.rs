//! How the build finds MLX, and the one-line errors it gives when it cannot. The build script's
//! own module is compiled in here, so these drive exactly the code `cargo build` runs.

#[path = "../build/wheel.rs"]
#[allow(dead_code)]
mod wheel;

use std::fs;
use std::path::{Path, PathBuf};

use wheel::{Backend, MLX_VERSION};

/// The wheel this very build was linked against.
fn real_wheel() -> PathBuf {
    PathBuf::from(env!("VLMBENCH_MLX_BUILD_WHEEL"))
}

fn fake_wheel(root: &Path, version: &str, with_library: bool) {
    let cmake = root.join("mlx/share/cmake/MLX");
    fs::create_dir_all(&cmake).unwrap();
    fs::write(
        cmake.join("MLXConfigVersion.cmake"),
        format!("set(PACKAGE_VERSION \"{version}\")\n"),
    )
    .unwrap();
    fs::create_dir_all(root.join("mlx/lib")).unwrap();
    if with_library {
        fs::write(root.join("mlx/lib/libmlx.so"), b"").unwrap();
    }
}

#[test]
fn accepts_the_wheel_root_or_its_mlx_package() {
    assert!(wheel::from_mlx_dir(&real_wheel()).is_ok());
    let via_package = wheel::from_mlx_dir(&real_wheel().join("mlx")).unwrap();
    assert_eq!(via_package.root, real_wheel());
}

#[test]
fn mlx_dir_that_is_not_a_wheel_says_so_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = wheel::from_mlx_dir(dir.path()).unwrap_err();
    assert!(
        err.starts_with(&format!("MLX_DIR={}", dir.path().display())),
        "{err}"
    );
    assert!(err.contains("is not an unpacked MLX wheel"), "{err}");
    assert!(err.contains("unset MLX_DIR"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn wheel_of_the_wrong_version_names_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    fake_wheel(dir.path(), "0.32.4", true);
    let err = wheel::from_mlx_dir(dir.path()).unwrap_err();
    assert!(err.contains("holds MLX 0.32.4"), "{err}");
    assert!(
        err.contains(&format!("needs exactly MLX {MLX_VERSION}")),
        "{err}"
    );
}

#[test]
fn wheel_without_its_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fake_wheel(dir.path(), MLX_VERSION, false);
    let err = wheel::from_mlx_dir(dir.path()).unwrap_err();
    assert!(err.contains("no libmlx.so or libmlx.dylib"), "{err}");
}

#[test]
fn missing_pip_says_how_to_get_it_or_avoid_it() {
    let cache = tempfile::tempdir().unwrap();
    let err = wheel::cached_wheel(Backend::Cpu, cache.path(), "/nonexistent/python3").unwrap_err();
    assert!(err.contains("needs pip"), "{err}");
    assert!(
        err.contains("VLMBENCH_PYTHON") && err.contains("MLX_DIR"),
        "{err}"
    );
    // Nothing half-made is left where the next build would look.
    assert!(!cache.path().join(format!("mlx-{MLX_VERSION}")).exists());
}

#[test]
fn a_complete_cached_wheel_is_reused_without_pip() {
    let cache = tempfile::tempdir().unwrap();
    fake_wheel(
        &cache.path().join(format!("mlx-{MLX_VERSION}/cpu")),
        MLX_VERSION,
        true,
    );
    let found = wheel::cached_wheel(Backend::Cpu, cache.path(), "/nonexistent/python3").unwrap();
    assert_eq!(
        found.root,
        cache.path().join(format!("mlx-{MLX_VERSION}/cpu"))
    );
}

#[test]
fn cache_root_prefers_the_explicit_setting_then_xdg_then_home() {
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        wheel::cache_root(p("/a"), p("/x"), p("/h")).unwrap(),
        PathBuf::from("/a")
    );
    assert_eq!(
        wheel::cache_root(None, p("/x"), p("/h")).unwrap(),
        PathBuf::from("/x/vlmbench")
    );
    assert_eq!(
        wheel::cache_root(None, None, p("/h")).unwrap(),
        PathBuf::from("/h/.cache/vlmbench")
    );
    assert!(wheel::cache_root(None, None, None)
        .unwrap_err()
        .contains("VLMBENCH_CACHE_DIR"));
}

#[test]
fn backend_choice_follows_the_variable_then_the_feature_then_the_platform() {
    assert_eq!(
        Backend::choose(Some("CUDA"), false, "linux"),
        Ok(Backend::Cuda)
    );
    assert_eq!(Backend::choose(None, true, "linux"), Ok(Backend::Cuda));
    assert_eq!(Backend::choose(None, false, "macos"), Ok(Backend::Metal));
    assert_eq!(Backend::choose(None, false, "linux"), Ok(Backend::Cpu));
    let err = Backend::choose(Some("rocm"), false, "linux").unwrap_err();
    assert!(
        err.contains("\"rocm\"") && err.contains("cpu, cuda or metal"),
        "{err}"
    );
}
