//! The mlx-c 0.7.0 sources, taken from the registry's own `mlx-sys 0.7.0` package through Cargo,
//! copied into OUT_DIR and patched there (nothing third-party is committed to this repository).

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fail;

const PACKAGE: &str = "mlx-sys-0.7.0";

/// A patched copy of mlx-c under `out_dir`, ready for CMake and bindgen.
pub fn prepare(out_dir: &Path, half_h: &Path) -> PathBuf {
    let upstream = registry_copy().unwrap_or_else(|| fetch_with_cargo(out_dir));
    let copy = out_dir.join("mlx-c");
    let _ = fs::remove_dir_all(&copy);
    if let Err(e) = copy_dir(&upstream, &copy) {
        fail(&format!(
            "cannot copy the mlx-c sources from {} into {}: {e}",
            upstream.display(),
            copy.display()
        ));
    }
    if let Err(e) = fs::copy(half_h, copy.join("mlx/c/half.h")) {
        fail(&format!(
            "cannot patch mlx/c/half.h in {}: {e}",
            copy.display()
        ));
    }
    copy
}

fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

fn is_mlx_c(dir: &Path) -> bool {
    dir.join("CMakeLists.txt").is_file() && dir.join("mlx/c/half.h").is_file()
}

/// The package as Cargo already unpacked it, if it did (any registry index directory).
fn registry_copy() -> Option<PathBuf> {
    let src = cargo_home()?.join("registry").join("src");
    fs::read_dir(src)
        .ok()?
        .flatten()
        .map(|index| index.path().join(PACKAGE).join("src/mlx-c"))
        .find(|dir| is_mlx_c(dir))
}

/// Has Cargo download and unpack the package by resolving a throwaway workspace that depends on it.
/// `cargo metadata` only resolves and fetches, so it does not contend with the build that runs us.
fn fetch_with_cargo(out_dir: &Path) -> PathBuf {
    let fetcher = out_dir.join("fetch-mlx-sys");
    let written = fs::create_dir_all(fetcher.join("src"))
        .and_then(|_| fs::write(fetcher.join("src/lib.rs"), ""))
        .and_then(|_| {
            fs::write(
                fetcher.join("Cargo.toml"),
                "[package]\nname = \"fetch-mlx-sys\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\nmlx-sys = { version = \"=0.7.0\", default-features = false }\n\n[workspace]\n",
            )
        });
    if let Err(e) = written {
        fail(&format!("cannot write {}: {e}", fetcher.display()));
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(fetcher.join("Cargo.toml"));
    if env::var("CARGO_NET_OFFLINE").as_deref() == Ok("true") {
        command.arg("--offline");
    }
    let output = command
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {cargo} metadata: {e}")));
    if !output.status.success() {
        fail(&format!(
            "cargo could not fetch the registry package mlx-sys 0.7.0 (the mlx-c sources): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let json = String::from_utf8_lossy(&output.stdout);
    let manifest = json
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|path| path.contains(PACKAGE))
        .map(|path| PathBuf::from(path.replace("\\\\", "\\")))
        .unwrap_or_else(|| fail("cargo metadata did not list mlx-sys 0.7.0"));
    let dir = manifest
        .parent()
        .map(|p| p.join("src/mlx-c"))
        .filter(|d| is_mlx_c(d));
    dir.unwrap_or_else(|| fail(&format!("{} holds no mlx-c sources", manifest.display())))
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
