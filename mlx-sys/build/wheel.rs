//! Finding MLX 0.32.2: `MLX_DIR` if set, else the official wheel fetched once with pip into a cache.
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
    fn version(&self) -> Option<String> {
        let text = fs::read_to_string(self.cmake_dir().join("MLXConfigVersion.cmake")).ok()?;
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("set(PACKAGE_VERSION \"")?;
            Some(rest.split('"').next()?.to_owned())
        })
    }

    fn has_library(&self) -> bool {
        ["libmlx.so", "libmlx.dylib"]
            .iter()
            .any(|name| self.lib_dir().join(name).is_file())
    }

    fn is_complete(&self) -> bool {
        self.has_library() && self.version().as_deref() == Some(MLX_VERSION)
    }

    /// Ok if this is an MLX 0.32.2 wheel with its library; else what is wrong, for `origin`.
    fn check(self, origin: &str) -> Result<MlxInstall, String> {
        match self.version() {
            Some(v) if v == MLX_VERSION => {}
            Some(v) => {
                return Err(format!(
                    "{origin} holds MLX {v}, but mlx-sys 0.7.0 needs exactly MLX {MLX_VERSION}: point it at an unpacked \
                     {MLX_VERSION} wheel (pip download --no-deps mlx-cpu=={MLX_VERSION}) or unset it to let the build fetch one"
                ))
            }
            None => return Err(format!("{origin}: cannot read the MLX version from {}", self.cmake_dir().display())),
        }
        if !self.has_library() {
            return Err(format!(
                "{origin}: no libmlx.so or libmlx.dylib in {}",
                self.lib_dir().display()
            ));
        }
        Ok(self)
    }
}

/// Validates a user-given `MLX_DIR`: the wheel's top directory or its `mlx/` package.
pub fn from_mlx_dir(dir: &Path) -> Result<MlxInstall, String> {
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
        Some(install) => install.check(&origin),
        None => Err(format!(
            "{origin} is not an unpacked MLX wheel (no mlx/share/cmake/MLX/MLXConfigVersion.cmake under it): \
             unpack mlx-cpu=={MLX_VERSION} there, or unset MLX_DIR to let the build fetch it"
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

/// The cached wheel for `backend` under `cache_root`, fetched with `python`'s pip if not there yet.
pub fn cached_wheel(
    backend: Backend,
    cache_root: &Path,
    python: &str,
) -> Result<MlxInstall, String> {
    let target = cache_root
        .join(format!("mlx-{MLX_VERSION}"))
        .join(backend.name());
    let install = MlxInstall {
        root: target.clone(),
    };
    if install.is_complete() {
        return Ok(install);
    }
    check_pip(python)?;
    // Fetch into a scratch directory and rename it into place, so that a crash or a concurrent
    // build never leaves a half-unpacked wheel where the next build would trust it.
    let scratch = cache_root.join(format!(
        ".{}-{}-{}",
        MLX_VERSION,
        backend.name(),
        std::process::id()
    ));
    let result = fetch_into(backend, python, &scratch).and_then(|_| {
        let _ = fs::remove_dir_all(&target);
        fs::create_dir_all(target.parent().unwrap_or(cache_root))
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        // A concurrent build may have won the race to the same target; its copy is as good as ours.
        if fs::rename(&scratch, &target).is_err() && !install.is_complete() {
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

fn fetch_into(backend: Backend, python: &str, scratch: &Path) -> Result<MlxInstall, String> {
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).map_err(|e| {
        format!(
            "cannot create the MLX cache directory {}: {e}",
            scratch.display()
        )
    })?;
    let spec = format!("{}=={MLX_VERSION}", backend.wheel());
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
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
            "`{python} -m pip download {spec}` failed (see above): check access to the Python package index, \
             or set MLX_DIR to an unpacked {spec} wheel"
        ));
    }
    let wheel = fs::read_dir(scratch)
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
        .arg(&wheel)
        .arg(scratch)
        .status();
    if !matches!(unpacked, Ok(s) if s.success()) {
        return Err(format!(
            "cannot unpack {}: the download may be corrupt; build again",
            wheel.display()
        ));
    }
    let _ = fs::remove_file(&wheel);
    MlxInstall {
        root: scratch.to_path_buf(),
    }
    .check(&format!("the downloaded {spec} wheel"))
}

/// Ok if `python -m pip` runs; else the line that tells the user what to do.
pub fn check_pip(python: &str) -> Result<(), String> {
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
         install pip (apt-get install python3-pip), set VLMBENCH_PYTHON to a Python with pip, \
         or set MLX_DIR to an unpacked mlx-cpu=={MLX_VERSION} wheel"
    ))
}
