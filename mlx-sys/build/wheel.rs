//! Finding MLX 0.32.2: `MLX_DIR` if set, else the official wheel fetched once with pip into a cache.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fail;

/// The MLX version mlx-c 0.7.0 (inside mlx-sys 0.7.0) was written against; 0.32.4 already breaks it.
pub const MLX_VERSION: &str = "0.32.2";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    /// The backend asked for: `VLMBENCH_MLX_BACKEND` (cpu|cuda|metal), else the `cuda` feature, else the platform's.
    pub fn requested() -> Backend {
        if let Ok(name) = env::var("VLMBENCH_MLX_BACKEND") {
            return match name.to_ascii_lowercase().as_str() {
                "cpu" => Backend::Cpu,
                "cuda" => Backend::Cuda,
                "metal" => Backend::Metal,
                other => fail(&format!(
                    "VLMBENCH_MLX_BACKEND={other:?} is not a backend: use cpu, cuda or metal"
                )),
            };
        }
        if env::var_os("CARGO_FEATURE_CUDA").is_some() {
            Backend::Cuda
        } else if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
            Backend::Metal
        } else {
            Backend::Cpu
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    /// The PyPI distribution that carries this backend's `libmlx`.
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

    /// Accepts the wheel's top directory, its `mlx/` package, or a Python site-packages holding it.
    fn from_user_path(path: &Path) -> Option<MlxInstall> {
        [path.to_path_buf(), path.parent().map(Path::to_path_buf).unwrap_or_default()]
            .into_iter()
            .map(|root| MlxInstall { root })
            .find(|install| install.cmake_dir().join("MLXConfigVersion.cmake").is_file())
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
        ["libmlx.so", "libmlx.dylib"].iter().any(|name| self.lib_dir().join(name).is_file())
    }

    fn check(self, origin: &str) -> MlxInstall {
        match self.version() {
            Some(v) if v == MLX_VERSION => {}
            Some(v) => fail(&format!(
                "{origin} holds MLX {v}, but mlx-sys 0.7.0 needs exactly MLX {MLX_VERSION}: point it at an unpacked \
                 {MLX_VERSION} wheel (pip download --no-deps mlx-cpu=={MLX_VERSION}) or unset it to let the build fetch one"
            )),
            None => fail(&format!("{origin}: cannot read the MLX version from {}", self.cmake_dir().display())),
        }
        if !self.has_library() {
            fail(&format!("{origin}: no libmlx.so or libmlx.dylib in {}", self.lib_dir().display()));
        }
        self
    }
}

/// `MLX_DIR` if set (validated), else the cached wheel for `backend`, fetched first if needed.
pub fn locate(backend: Backend) -> MlxInstall {
    if let Some(dir) = env::var_os("MLX_DIR") {
        let dir = PathBuf::from(dir);
        let origin = format!("MLX_DIR={}", dir.display());
        return match MlxInstall::from_user_path(&dir) {
            Some(install) => install.check(&origin),
            None => fail(&format!(
                "{origin} is not an unpacked MLX wheel (expected mlx/share/cmake/MLX/MLXConfigVersion.cmake under it): \
                 unpack mlx-cpu=={MLX_VERSION} there, or unset MLX_DIR to let the build fetch it"
            )),
        };
    }
    cached_wheel(backend)
}

/// Where fetched wheels live: `VLMBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/vlmbench`, else `~/.cache/vlmbench`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = env::var_os("VLMBENCH_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("vlmbench");
    }
    match env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("vlmbench"),
        None => fail("neither VLMBENCH_CACHE_DIR, XDG_CACHE_HOME nor HOME is set: set VLMBENCH_CACHE_DIR to a writable directory"),
    }
}

fn cached_wheel(backend: Backend) -> MlxInstall {
    let target = cache_root().join(format!("mlx-{MLX_VERSION}")).join(backend.name());
    let install = MlxInstall { root: target.clone() };
    if install.has_library() && install.version().as_deref() == Some(MLX_VERSION) {
        return install;
    }
    // Fetch into a scratch directory and rename it into place, so that a crash or a concurrent
    // build never leaves a half-unpacked wheel where the next build would trust it.
    let parent = target.parent().expect("cache path has a parent");
    let scratch = parent.join(format!(".{}-{}", backend.name(), std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    if let Err(e) = fs::create_dir_all(&scratch) {
        fail(&format!("cannot create the MLX cache directory {}: {e}", scratch.display()));
    }
    let python = python();
    let spec = format!("{}=={MLX_VERSION}", backend.wheel());
    let download = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", &spec, "-d"])
        .arg(&scratch)
        .status();
    match download {
        Ok(status) if status.success() => {}
        Ok(_) => fail(&format!(
            "`{python} -m pip download {spec}` failed (see above): check network access to the Python package index, \
             or set MLX_DIR to an unpacked {spec} wheel"
        )),
        Err(e) => fail(&format!("cannot run {python}: {e}; install Python 3 with pip, or set MLX_DIR to an unpacked {spec} wheel")),
    }
    let wheel = fs::read_dir(&scratch)
        .ok()
        .and_then(|entries| entries.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "whl")))
        .unwrap_or_else(|| fail(&format!("pip reported success but left no .whl for {spec} in {}", scratch.display())));
    let unpack = Command::new(&python).args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&scratch).status();
    if !matches!(unpack, Ok(s) if s.success()) {
        fail(&format!("cannot unpack {}: the download may be corrupt; delete it and build again", wheel.display()));
    }
    let _ = fs::remove_file(&wheel);
    MlxInstall { root: scratch.clone() }.check(&format!("the downloaded {spec} wheel"));
    let _ = fs::remove_dir_all(&target);
    // A concurrent build may have won the race to the same target; its copy is as good as ours.
    if fs::rename(&scratch, &target).is_err() && !install.has_library() {
        fail(&format!("cannot move the unpacked wheel into {}", target.display()));
    }
    let _ = fs::remove_dir_all(&scratch);
    install
}

/// The Python used to run pip: `VLMBENCH_PYTHON`, else `python3`. Fails clearly when pip is missing.
fn python() -> String {
    let python = env::var("VLMBENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let has_pip = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_pip {
        fail(&format!(
            "building mlx-sys needs pip to fetch the MLX {MLX_VERSION} wheel, and `{python} -m pip` does not run: \
             install pip (apt-get install python3-pip), set VLMBENCH_PYTHON to a Python with pip, \
             or set MLX_DIR to an unpacked mlx-cpu=={MLX_VERSION} wheel"
        ));
    }
    python
}
