//! How the build finds MLX, which wheel it takes for which Rust target, what it tells the linker,
//! and the one-line errors it gives when it cannot. The build script's own modules are compiled in
//! here, so these drive exactly the code `cargo build` runs.

#[path = "../build/link.rs"]
mod link;
#[path = "../build/wheel.rs"]
#[allow(dead_code)]
mod wheel;

use std::fs;
use std::path::{Path, PathBuf};

use wheel::{choose_wheel, Backend, MacosVersion, Tool, WheelChoice, MLX_VERSION};

const LINUX: &str = "x86_64-unknown-linux-gnu";
const MAC: &str = "aarch64-apple-darwin";

fn linux_cpu() -> WheelChoice {
    choose_wheel(Backend::Cpu, LINUX, None).unwrap()
}

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
    let info = root.join(format!("mlx_cpu-{version}.dist-info"));
    fs::create_dir_all(&info).unwrap();
    fs::write(
        info.join("WHEEL"),
        "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-manylinux_2_35_x86_64\n",
    )
    .unwrap();
}

#[test]
fn accepts_the_wheel_root_or_its_mlx_package() {
    assert!(wheel::from_mlx_dir(&real_wheel(), &linux_cpu()).is_ok());
    let via_package = wheel::from_mlx_dir(&real_wheel().join("mlx"), &linux_cpu()).unwrap();
    assert_eq!(via_package.root, real_wheel());
}

#[test]
fn mlx_dir_that_is_not_a_wheel_says_so_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = wheel::from_mlx_dir(dir.path(), &linux_cpu()).unwrap_err();
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
    let err = wheel::from_mlx_dir(dir.path(), &linux_cpu()).unwrap_err();
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
    let err = wheel::from_mlx_dir(dir.path(), &linux_cpu()).unwrap_err();
    assert!(err.contains("no libmlx.so in"), "{err}");
}

#[test]
fn missing_pip_says_how_to_get_it_or_avoid_it() {
    let cache = tempfile::tempdir().unwrap();
    let err = wheel::cached_wheel(&linux_cpu(), cache.path(), "/nonexistent/python3", "linux")
        .unwrap_err();
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
    let found =
        wheel::cached_wheel(&linux_cpu(), cache.path(), "/nonexistent/python3", "linux").unwrap();
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

fn one_line(err: &str) {
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn the_wheel_follows_the_rust_target_not_the_python_that_runs_pip() {
    let mac = choose_wheel(Backend::Metal, MAC, None).unwrap();
    assert_eq!(
        (mac.package, mac.platform, mac.library()),
        ("mlx-metal", "macosx_14_0_arm64", "libmlx.dylib")
    );
    assert_eq!(mac.macos_deployment_target, Some(MacosVersion::new(14, 0)));
    assert_eq!(
        mac.pip_download(),
        "pip download --no-deps --only-binary=:all: --platform macosx_14_0_arm64 mlx-metal==0.32.2"
    );
    let cases = [
        (Backend::Cpu, LINUX, "mlx-cpu", "manylinux_2_35_x86_64"),
        (Backend::Cuda, LINUX, "mlx-cuda-13", "manylinux_2_35_x86_64"),
        (
            Backend::Cpu,
            "aarch64-unknown-linux-gnu",
            "mlx-cpu",
            "manylinux_2_35_aarch64",
        ),
        (
            Backend::Cuda,
            "aarch64-unknown-linux-gnu",
            "mlx-cuda-13",
            "manylinux_2_35_aarch64",
        ),
    ];
    for (backend, target, package, platform) in cases {
        let wheel = choose_wheel(backend, target, Some("14.0")).unwrap();
        assert_eq!(
            (wheel.package, wheel.platform),
            (package, platform),
            "{target}"
        );
        assert_eq!(wheel.macos_deployment_target, None);
        assert_eq!(wheel.library(), "libmlx.so");
    }
}

#[test]
fn the_macos_wheel_is_the_newest_whose_library_runs_on_the_deployment_target() {
    let platform = |dt: Option<&str>| choose_wheel(Backend::Metal, MAC, dt).map(|w| w.platform);
    assert_eq!(platform(None), Ok("macosx_14_0_arm64"));
    assert_eq!(platform(Some("")), Ok("macosx_14_0_arm64"));
    assert_eq!(platform(Some("14")), Ok("macosx_14_0_arm64"));
    assert_eq!(platform(Some("14.7")), Ok("macosx_14_0_arm64"));
    assert_eq!(platform(Some("15.0")), Ok("macosx_15_0_arm64"));
    // The wheel tagged 26.0 holds a libmlx built for 26.2: on 26.0 and 26.1 it would not load.
    assert_eq!(platform(Some("26.0")), Ok("macosx_15_0_arm64"));
    assert_eq!(platform(Some("26.1")), Ok("macosx_15_0_arm64"));
    assert_eq!(platform(Some("26.2")), Ok("macosx_26_0_arm64"));
    assert_eq!(platform(Some("27.0.1")), Ok("macosx_26_0_arm64"));
    let wheel = choose_wheel(Backend::Metal, MAC, Some("26.1")).unwrap();
    assert_eq!(
        wheel.macos_deployment_target,
        Some(MacosVersion::new(26, 1))
    );

    let err = platform(Some("13.5")).unwrap_err();
    assert!(
        err.contains("MACOSX_DEPLOYMENT_TARGET=13.5") && err.contains("14.0"),
        "{err}"
    );
    one_line(&err);
    for bad in ["fourteen", "14.x", "14.0.0.1", "-1"] {
        let err = platform(Some(bad)).unwrap_err();
        assert!(err.contains("is not a macOS version"), "{bad}: {err}");
        one_line(&err);
    }
}

#[test]
fn targets_without_an_mlx_wheel_are_refused_with_what_to_build_instead() {
    let cases = [
        (
            Backend::Metal,
            "x86_64-apple-darwin",
            &["Apple silicon", "aarch64-apple-darwin", "Rosetta"][..],
        ),
        (Backend::Cpu, MAC, &["no CPU-only wheel for macOS", "metal"]),
        (Backend::Cuda, MAC, &["Linux only"]),
        (Backend::Metal, LINUX, &["macOS only", LINUX]),
        (
            Backend::Cpu,
            "x86_64-unknown-linux-musl",
            &["glibc", "x86_64-unknown-linux-gnu"],
        ),
        (
            Backend::Cpu,
            "riscv64gc-unknown-linux-gnu",
            &["no Linux wheel for riscv64gc"],
        ),
        (
            Backend::Cpu,
            "x86_64-pc-windows-msvc",
            &["no wheel for the target x86_64-pc-windows-msvc"],
        ),
    ];
    for (backend, target, words) in cases {
        let err = choose_wheel(backend, target, None).unwrap_err();
        for word in words {
            assert!(err.contains(word), "{target}: {err}");
        }
        one_line(&err);
    }
}

#[test]
fn macos_versions_parse_and_print_as_the_variable_spells_them() {
    assert_eq!(MacosVersion::parse("14"), Some(MacosVersion::new(14, 0)));
    assert_eq!(
        MacosVersion::parse(" 15.4 "),
        Some(MacosVersion::new(15, 4))
    );
    assert_eq!(
        MacosVersion::parse("26.2.1"),
        Some(MacosVersion::new(26, 2))
    );
    assert_eq!(MacosVersion::parse("14."), None);
    assert_eq!(MacosVersion::parse(""), None);
    assert_eq!(MacosVersion::new(26, 2).to_string(), "26.2");
    assert!(MacosVersion::new(26, 1) < MacosVersion::new(26, 2));
    assert!(MacosVersion::new(15, 9) < MacosVersion::new(26, 0));
}

#[test]
fn hints_name_the_macos_wheel_and_tools_on_a_mac() {
    let mac = choose_wheel(Backend::Metal, MAC, None).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = wheel::cached_wheel(&mac, cache.path(), "/nonexistent/python3", "macos").unwrap_err();
    assert!(
        err.contains("ensurepip") && err.contains("mlx-metal==0.32.2"),
        "{err}"
    );
    assert!(
        !err.contains("apt-get") && !err.contains("mlx-cpu"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let err = wheel::from_mlx_dir(dir.path(), &mac).unwrap_err();
    assert!(err.contains("unpack mlx-metal==0.32.2"), "{err}");
    fake_wheel(dir.path(), "0.32.4", true);
    let err = wheel::from_mlx_dir(dir.path(), &mac).unwrap_err();
    assert!(
        err.contains("--platform macosx_14_0_arm64 mlx-metal==0.32.2"),
        "{err}"
    );
    fake_wheel(dir.path(), MLX_VERSION, true);
    let err = wheel::from_mlx_dir(dir.path(), &mac).unwrap_err();
    assert!(err.contains("no libmlx.dylib in"), "{err}");

    for tool in [Tool::Pip, Tool::CMake, Tool::Libclang] {
        let hint = wheel::install_hint(tool, "macos");
        assert!(!hint.contains("apt-get"), "{hint}");
        assert!(wheel::install_hint(tool, "linux").contains("apt-get"));
    }
    assert!(wheel::install_hint(Tool::CMake, "macos").contains("brew install cmake"));
    assert!(wheel::install_hint(Tool::Libclang, "macos").contains("xcode-select --install"));
    let err = wheel::cached_wheel(&linux_cpu(), cache.path(), "/nonexistent/python3", "linux")
        .unwrap_err();
    assert!(
        err.contains("apt-get install python3-pip") && err.contains("mlx-cpu==0.32.2"),
        "{err}"
    );
}

#[test]
fn the_build_scripts_other_files_name_no_linux_package_or_tool() {
    // Hints are worded per platform in wheel.rs (install_hint, Backend::wheel); nowhere else.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["build.rs", "build/mlx_c.rs", "build/link.rs"] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        for word in ["apt-get", "mlx-cpu", "libclang-dev", "python3-pip"] {
            assert!(!text.contains(word), "{file} says {word}");
        }
    }
}

#[test]
fn a_cached_wheel_for_another_platform_is_fetched_again_not_reused() {
    let cache = tempfile::tempdir().unwrap();
    fake_wheel(
        &cache.path().join(format!("mlx-{MLX_VERSION}/cpu")),
        MLX_VERSION,
        true,
    );
    let arm = choose_wheel(Backend::Cpu, "aarch64-unknown-linux-gnu", None).unwrap();
    // Not reused: it goes for pip, which is not there.
    let err = wheel::cached_wheel(&arm, cache.path(), "/nonexistent/python3", "linux").unwrap_err();
    assert!(err.contains("needs pip"), "{err}");
}

fn directives(target_os: &str, dt: Option<MacosVersion>) -> Vec<String> {
    link::directives(&link::Link {
        target_os,
        mlxc_dir: Path::new("/out/lib"),
        build_lib_dir: Path::new("/cache/cpu/mlx/lib"),
        runtime_lib_dir: Path::new("/cache/run/mlx/lib"),
        macos_deployment_target: dt,
    })
}

#[test]
fn the_rpath_reaches_every_target_of_mlx_sys_its_unit_tests_included() {
    for lines in [
        directives("macos", Some(MacosVersion::new(14, 0))),
        directives("linux", None),
    ] {
        // `rustc-link-arg` covers the library's unit tests, benches and examples too;
        // `rustc-link-arg-tests` (integration tests only) left the unit-test binary without it.
        assert!(
            lines.contains(&"cargo:rustc-link-arg=-Wl,-rpath,/cache/run/mlx/lib".to_owned()),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("cargo:rustc-link-arg-")),
            "{lines:?}"
        );
        assert!(lines.contains(&"cargo::metadata=runtime_lib_dir=/cache/run/mlx/lib".to_owned()));
        assert!(lines.contains(&"cargo:rustc-link-search=native=/cache/cpu/mlx/lib".to_owned()));
        assert!(lines.contains(&"cargo:rustc-link-lib=dylib=mlx".to_owned()));
    }
}

#[test]
fn macos_links_libcxx_for_the_deployment_target_and_linux_libstdcxx() {
    let mac = directives("macos", Some(MacosVersion::new(14, 0)));
    assert!(
        mac.contains(&"cargo:rustc-link-lib=dylib=c++".to_owned()),
        "{mac:?}"
    );
    assert!(
        mac.contains(&"cargo:rustc-env=MACOSX_DEPLOYMENT_TARGET=14.0".to_owned()),
        "{mac:?}"
    );
    let linux = directives("linux", None);
    assert!(linux.contains(&"cargo:rustc-link-lib=dylib=stdc++".to_owned()));
    assert!(!linux.iter().any(|l| l.contains("MACOSX_DEPLOYMENT_TARGET")));
}

#[test]
fn the_workspace_builds_rust_for_the_macos_the_mlx_wheel_needs() {
    // rustc links for macOS 11.0 unless told; the workspace's cargo config tells it (and every
    // build script) the deployment target the wheel choice defaults to.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cargo/config.toml");
    let text = fs::read_to_string(&config).unwrap();
    let mut section = "";
    let mut value = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if let Some(rest) = line.strip_prefix("MACOSX_DEPLOYMENT_TARGET") {
            if section == "[env]" {
                value = Some(
                    rest.trim_start()
                        .trim_start_matches('=')
                        .trim()
                        .trim_matches('"'),
                );
            }
        }
    }
    let value = value.expect("[env] MACOSX_DEPLOYMENT_TARGET in .cargo/config.toml");
    assert_eq!(
        MacosVersion::parse(value),
        Some(wheel::MACOS_DEPLOYMENT_TARGET)
    );
    let wheel = choose_wheel(Backend::Metal, MAC, Some(value)).unwrap();
    assert_eq!(wheel.platform, "macosx_14_0_arm64");
}
