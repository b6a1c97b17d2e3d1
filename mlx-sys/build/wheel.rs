//! Finding MLX 0.32.2: `MLX_DIR` if set, else the official wheel fetched once with pip into a cache.
//! The wheel is chosen from the Rust target (not from what the Python running pip would pick), and
//! pip is told its platform tag.
//!
//! Everything here returns `Result<_, String>`, the string being the one line the build prints;
//! the environment is read by the caller (`build.rs`), so tests can drive every path directly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The MLX version mlx-c 0.7.0 (inside mlx-sys 0.7.0) was written against; 0.32.4 already breaks it.
pub const MLX_VERSION: &str = "0.32.2";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    /// `VLMBENCH_MLX_BACKEND`'s value if given, else the `cuda` feature, else the platform's.
    pub fn choose(
        requested: Option<&str>,
        cuda_feature: bool,
        target_os: &str,
    ) -> Result<Backend, String> {
        match requested.map(str::to_ascii_lowercase).as_deref() {
            Some("cpu") => Ok(Backend::Cpu),
            Some("cuda") => Ok(Backend::Cuda),
            Some("metal") => Ok(Backend::Metal),
            Some(other) => Err(format!(
                "VLMBENCH_MLX_BACKEND={other:?} is not a backend: use cpu, cuda or metal"
            )),
            None if cuda_feature => Ok(Backend::Cuda),
            None if target_os == "macos" => Ok(Backend::Metal),
            None => Ok(Backend::Cpu),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    /// The Python distribution that carries this backend's `libmlx`.
    pub fn wheel(self) -> &'static str {
        match self {
            Backend::Cpu => "mlx-cpu",
            Backend::Cuda => "mlx-cuda-13",
            Backend::Metal => "mlx-metal",
        }
    }
}

/// A macOS version as `MACOSX_DEPLOYMENT_TARGET` and `LC_BUILD_VERSION` give it (major.minor).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct MacosVersion {
    pub major: u32,
    pub minor: u32,
}

impl MacosVersion {
    pub const fn new(major: u32, minor: u32) -> MacosVersion {
        MacosVersion { major, minor }
    }

    /// `14`, `14.0` or `15.4.1` (the patch level is ignored); None for anything else.
    pub fn parse(text: &str) -> Option<MacosVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        match parts.next() {
            Some(patch) if patch.parse::<u32>().is_err() || parts.next().is_some() => None,
            _ => Some(MacosVersion { major, minor }),
        }
    }
}

impl std::fmt::Display for MacosVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The macOS vlmbench is built for unless `MACOSX_DEPLOYMENT_TARGET` says otherwise: the oldest
/// MLX 0.32.2 runs on. `.cargo/config.toml` sets the same for rustc, so Rust links for it too.
pub const MACOS_DEPLOYMENT_TARGET: MacosVersion = MacosVersion::new(14, 0);

/// MLX 0.32.2's macOS wheels (`mlx-metal`, arm64 only), newest first: the macOS its `libmlx.dylib`
/// really needs (its LC_BUILD_VERSION minos, read from each wheel) and the wheel's platform tag.
/// The wheel tagged 26.0 needs 26.2, so on 26.0 and 26.1 pip's own choice would not load.
const MACOS_WHEELS: [(MacosVersion, &str); 3] = [
    (MacosVersion::new(26, 2), "macosx_26_0_arm64"),
    (MacosVersion::new(15, 0), "macosx_15_0_arm64"),
    (MacosVersion::new(14, 0), "macosx_14_0_arm64"),
];

/// Which MLX wheel a build for one Rust target uses, and how pip is asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelChoice {
    pub backend: Backend,
    /// The Python distribution (`mlx-cpu`, `mlx-cuda-13`, `mlx-metal`).
    pub package: &'static str,
    /// The platform tag given to `pip download --platform`.
    pub platform: &'static str,
    /// The macOS the C, C++ and Rust code is built for (macOS targets only).
    pub macos_deployment_target: Option<MacosVersion>,
}

impl WheelChoice {
    /// The file name of the library this target links and loads.
    pub fn library(&self) -> &'static str {
        if self.macos_deployment_target.is_some() {
            "libmlx.dylib"
        } else {
            "libmlx.so"
        }
    }

    /// `mlx-metal==0.32.2`.
    pub fn spec(&self) -> String {
        format!("{}=={MLX_VERSION}", self.package)
    }

    /// The pip command that fetches this wheel and nothing else, for messages.
    pub fn pip_download(&self) -> String {
        format!(
            "pip download --no-deps --only-binary=:all: --platform {} {}",
            self.platform,
            self.spec()
        )
    }
}

/// The MLX wheel for `backend` on the Rust target `target` (a triple, as in `TARGET`), given
/// `MACOSX_DEPLOYMENT_TARGET`'s value; or the one line that says why there is none.
pub fn choose_wheel(
    backend: Backend,
    target: &str,
    macos_deployment_target: Option<&str>,
) -> Result<WheelChoice, String> {
    let arch = target.split('-').next().unwrap_or_default();
    if target.contains("-apple-darwin") {
        return choose_macos_wheel(backend, target, arch, macos_deployment_target);
    }
    if !target.contains("-linux-") {
        return Err(format!(
            "MLX {MLX_VERSION} publishes no wheel for the target {target}: vlmbench builds for Linux (x86_64, aarch64) \
             and macOS on Apple silicon (aarch64-apple-darwin)"
        ));
    }
    if !target.ends_with("-linux-gnu") {
        return Err(format!(
            "MLX {MLX_VERSION}'s Linux wheels need glibc, and the target {target} is not a glibc one: \
             build for {arch}-unknown-linux-gnu"
        ));
    }
    let platform = match arch {
        "x86_64" => "manylinux_2_35_x86_64",
        "aarch64" => "manylinux_2_35_aarch64",
        _ => {
            return Err(format!(
                "MLX {MLX_VERSION} publishes no Linux wheel for {arch} (target {target}): only x86_64 and aarch64"
            ))
        }
    };
    if backend == Backend::Metal {
        return Err(format!(
            "the Metal backend exists on macOS only, not for the target {target}: \
             unset VLMBENCH_MLX_BACKEND or set it to cpu or cuda"
        ));
    }
    Ok(WheelChoice {
        backend,
        package: backend.wheel(),
        platform,
        macos_deployment_target: None,
    })
}

fn choose_macos_wheel(
    backend: Backend,
    target: &str,
    arch: &str,
    deployment_target: Option<&str>,
) -> Result<WheelChoice, String> {
    if arch != "aarch64" && arch != "arm64" {
        return Err(format!(
            "MLX {MLX_VERSION}'s macOS wheels are for Apple silicon only and the target {target} is not: \
             build for aarch64-apple-darwin (an arm64 Rust toolchain, not one running under Rosetta)"
        ));
    }
    match backend {
        Backend::Metal => {}
        Backend::Cuda => {
            return Err(
                "the CUDA backend exists for Linux only: drop the `cuda` feature / VLMBENCH_MLX_BACKEND=cuda"
                    .to_owned(),
            )
        }
        Backend::Cpu => {
            return Err(format!(
                "MLX {MLX_VERSION} has no CPU-only wheel for macOS (mlx-metal runs on the CPU too): \
                 unset VLMBENCH_MLX_BACKEND or set it to metal"
            ))
        }
    }
    let deployment_target = match deployment_target.map(str::trim).filter(|v| !v.is_empty()) {
        None => MACOS_DEPLOYMENT_TARGET,
        Some(text) => MacosVersion::parse(text).ok_or_else(|| {
            format!("MACOSX_DEPLOYMENT_TARGET={text:?} is not a macOS version such as 14.0")
        })?,
    };
    let platform = MACOS_WHEELS
        .iter()
        .find(|(needs, _)| *needs <= deployment_target)
        .map(|(_, platform)| *platform)
        .ok_or_else(|| {
            format!(
                "MACOSX_DEPLOYMENT_TARGET={deployment_target} is older than macOS {MACOS_DEPLOYMENT_TARGET}, the oldest \
                 MLX {MLX_VERSION} runs on: set it to {MACOS_DEPLOYMENT_TARGET} or later, or unset it"
            )
        })?;
    Ok(WheelChoice {
        backend,
        package: backend.wheel(),
        platform,
        macos_deployment_target: Some(deployment_target),
    })
}

/// What to install, said for the machine that runs the build (`host_os` as `std::env::consts::OS`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tool {
    Pip,
    CMake,
    Libclang,
}

pub fn install_hint(tool: Tool, host_os: &str) -> &'static str {
    match (tool, host_os) {
        (Tool::Pip, "linux") => "install pip (apt-get install python3-pip)",
        (Tool::Pip, "macos") => "install pip (python3 -m ensurepip --upgrade)",
        (Tool::Pip, _) => "install pip",
        (Tool::CMake, "linux") => "install CMake (apt-get install cmake)",
        (Tool::CMake, "macos") => "install CMake (brew install cmake)",
        (Tool::CMake, _) => "install CMake",
        (Tool::Libclang, "linux") => "install libclang (apt-get install libclang-dev)",
        (Tool::Libclang, "macos") => {
            "install the Xcode command line tools (xcode-select --install)"
        }
        (Tool::Libclang, _) => "install libclang or set LIBCLANG_PATH",
    }
}

/// An unpacked MLX wheel: the directory that holds the `mlx/` package (`mlx/lib`, `mlx/include`, `mlx/share`).
#[derive(Clone, Debug)]
pub struct MlxInstall {
    pub root: PathBuf,
}

impl MlxInstall {
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("mlx/lib")
    }

    pub fn cmake_dir(&self) -> PathBuf {
        self.root.join("mlx/share/cmake/MLX")
    }

    /// The version recorded by MLX's own CMake package file.
    pub fn version(&self) -> Option<String> {
        let text = fs::read_to_string(self.cmake_dir().join("MLXConfigVersion.cmake")).ok()?;
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("set(PACKAGE_VERSION \"")?;
            Some(rest.split('"').next()?.to_owned())
        })
    }

    /// The platform tags the wheel's own `*.dist-info/WHEEL` declares (none for a hand-made tree).
    pub fn platform_tags(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".dist-info"))
            .filter_map(|e| fs::read_to_string(e.path().join("WHEEL")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("Tag:"))
                    .filter_map(|tag| tag.trim().rsplit('-').next().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn has_library(&self, wheel: &WheelChoice) -> bool {
        self.lib_dir().join(wheel.library()).is_file()
    }

    fn is_complete(&self, wheel: &WheelChoice) -> bool {
        self.has_library(wheel)
            && self.version().as_deref() == Some(MLX_VERSION)
            && self.platform_tags().iter().any(|t| t == wheel.platform)
    }

    /// Ok if this is an MLX 0.32.2 wheel with the target's library; else what is wrong, for `origin`.
    fn check(self, origin: &str, wheel: &WheelChoice) -> Result<MlxInstall, String> {
        match self.version() {
            Some(v) if v == MLX_VERSION => {}
            Some(v) => {
                return Err(format!(
                    "{origin} holds MLX {v}, but mlx-sys 0.7.0 needs exactly MLX {MLX_VERSION}: point it at an unpacked \
                     {MLX_VERSION} wheel ({}) or unset it to let the build fetch one",
                    wheel.pip_download()
                ))
            }
            None => return Err(format!("{origin}: cannot read the MLX version from {}", self.cmake_dir().display())),
        }
        if !self.has_library(wheel) {
            return Err(format!(
                "{origin}: no {} in {}",
                wheel.library(),
                self.lib_dir().display()
            ));
        }
        Ok(self)
    }
}

/// Validates a user-given `MLX_DIR`: the wheel's top directory or its `mlx/` package.
pub fn from_mlx_dir(dir: &Path, wheel: &WheelChoice) -> Result<MlxInstall, String> {
    let origin = format!("MLX_DIR={}", dir.display());
    let candidates = [
        dir.to_path_buf(),
        dir.parent().map(Path::to_path_buf).unwrap_or_default(),
    ];
    match candidates
        .into_iter()
        .map(|root| MlxInstall { root })
        .find(|install| install.cmake_dir().join("MLXConfigVersion.cmake").is_file())
    {
        Some(install) => install.check(&origin, wheel),
        None => Err(format!(
            "{origin} is not an unpacked MLX wheel (no mlx/share/cmake/MLX/MLXConfigVersion.cmake under it): \
             unpack {} there, or unset MLX_DIR to let the build fetch it",
            wheel.spec()
        )),
    }
}

/// Where fetched wheels live: `VLMBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/vlmbench`, else `~/.cache/vlmbench`.
pub fn cache_root(
    cache_dir: Option<PathBuf>,
    xdg_cache: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf, String> {
    cache_dir
        .or_else(|| xdg_cache.map(|d| d.join("vlmbench")))
        .or_else(|| home.map(|h| h.join(".cache").join("vlmbench")))
        .ok_or_else(|| {
            "neither VLMBENCH_CACHE_DIR, XDG_CACHE_HOME nor HOME is set: set VLMBENCH_CACHE_DIR to a writable directory"
                .to_owned()
        })
}

/// The cached `wheel` under `cache_root`, fetched with `python`'s pip if not there yet (or if the one
/// there is for another platform). `host_os` words the hints (`std::env::consts::OS`).
pub fn cached_wheel(
    wheel: &WheelChoice,
    cache_root: &Path,
    python: &str,
    host_os: &str,
) -> Result<MlxInstall, String> {
    let backend = wheel.backend;
    let target = cache_root
        .join(format!("mlx-{MLX_VERSION}"))
        .join(backend.name());
    let install = MlxInstall {
        root: target.clone(),
    };
    if install.is_complete(wheel) {
        return Ok(install);
    }
    check_pip(python, host_os, wheel)?;
    // Fetch into a scratch directory and rename it into place, so that a crash or a concurrent
    // build never leaves a half-unpacked wheel where the next build would trust it.
    let scratch = cache_root.join(format!(
        ".{}-{}-{}",
        MLX_VERSION,
        backend.name(),
        std::process::id()
    ));
    let result = fetch_into(wheel, python, &scratch).and_then(|_| {
        let _ = fs::remove_dir_all(&target);
        fs::create_dir_all(target.parent().unwrap_or(cache_root))
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        // A concurrent build may have won the race to the same target; its copy is as good as ours.
        if fs::rename(&scratch, &target).is_err() && !install.is_complete(wheel) {
            return Err(format!(
                "cannot move the unpacked wheel into {}",
                target.display()
            ));
        }
        Ok(install)
    });
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn fetch_into(wheel: &WheelChoice, python: &str, scratch: &Path) -> Result<MlxInstall, String> {
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).map_err(|e| {
        format!(
            "cannot create the MLX cache directory {}: {e}",
            scratch.display()
        )
    })?;
    let spec = wheel.spec();
    // The platform is the Rust target's, not the interpreter's: an x86_64 Python under Rosetta, or
    // pip on macOS 26.0 (which would take the wheel tagged 26.0 that needs 26.2), still gets ours.
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            wheel.platform,
            "--disable-pip-version-check",
            "-q",
        ])
        .arg(&spec)
        .arg("-d")
        .arg(scratch)
        .status()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{python} -m {}` failed (see above): check access to the Python package index, \
             or set MLX_DIR to an unpacked {spec} wheel",
            wheel.pip_download()
        ));
    }
    let file = fs::read_dir(scratch)
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
        })
        .ok_or_else(|| {
            format!(
                "pip reported success but left no .whl for {spec} in {}",
                scratch.display()
            )
        })?;
    let unpacked = Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(&file)
        .arg(scratch)
        .status();
    if !matches!(unpacked, Ok(s) if s.success()) {
        return Err(format!(
            "cannot unpack {}: the download may be corrupt; build again",
            file.display()
        ));
    }
    let _ = fs::remove_file(&file);
    let install = MlxInstall {
        root: scratch.to_path_buf(),
    };
    let tags = install.platform_tags();
    if !tags.iter().any(|t| t == wheel.platform) {
        return Err(format!(
            "pip fetched {spec} for {}, not {}: MLX's wheels for this target have changed",
            tags.join(", "),
            wheel.platform
        ));
    }
    install.check(&format!("the downloaded {spec} wheel"), wheel)
}

/// Ok if `python -m pip` runs; else the line that tells the user what to do on `host_os`.
pub fn check_pip(python: &str, host_os: &str, wheel: &WheelChoice) -> Result<(), String> {
    let runs = Command::new(python)
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return Ok(());
    }
    Err(format!(
        "building mlx-sys needs pip to fetch the MLX {MLX_VERSION} wheel, and `{python} -m pip` does not run: \
         {}, set VLMBENCH_PYTHON to a Python with pip, or set MLX_DIR to an unpacked {} wheel",
        install_hint(Tool::Pip, host_os),
        wheel.spec()
    ))
}
