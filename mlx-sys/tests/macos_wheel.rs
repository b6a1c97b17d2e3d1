//! The macOS (Apple silicon) build checked on any machine, without a Mac. The `mlx-metal` wheel a
//! build for aarch64-apple-darwin takes is fetched by the build's own code (same choice, same pip
//! command, same cache under ~/.cache/vlmbench) and checked for what the build and the loader need:
//! - its layout: `mlx/lib/libmlx.dylib` (an arm64 dylib named `@rpath/libmlx.dylib`, for no newer
//!   macOS than the deployment target), `mlx.metallib` beside it, every MLX header that mlx-c and
//!   vlmbench's shim include (and those headers include), MLX's CMake package at 0.32.2 and every
//!   file its targets name;
//! - its exports: every `mlx::` symbol that mlx-c and the shim, as built here, leave undefined is
//!   exported by that libmlx.dylib, and so is the symbol `doctor` finds libmlx by. Names are compared
//!   demangled, with libstdc++'s and libc++'s spellings of the standard library (and of int64_t,
//!   `long` on Linux and `long long` on macOS) made one.
//!
//! Each check is also fed a doctored wheel or an extra symbol, to show that it fails.

#[path = "../build/wheel.rs"]
#[allow(dead_code)]
mod wheel;

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use goblin::mach::{cputype, header, load_command::CommandVariant, Mach, MachO};
use wheel::{choose_wheel, Backend, MacosVersion, MlxInstall, WheelChoice, MLX_VERSION};

const TARGET: &str = "aarch64-apple-darwin";

/// The wheel a build for aarch64-apple-darwin fetches, fetched once per test run (then cached).
fn macos_wheel() -> &'static (WheelChoice, PathBuf) {
    static WHEEL: OnceLock<(WheelChoice, PathBuf)> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let dt = env::var("MACOSX_DEPLOYMENT_TARGET").ok();
        let choice =
            choose_wheel(Backend::Metal, TARGET, dt.as_deref()).unwrap_or_else(|e| panic!("{e}"));
        let cache = wheel::cache_root(
            env::var_os("VLMBENCH_CACHE_DIR").map(PathBuf::from),
            env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
            env::var_os("HOME").map(PathBuf::from),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let python = env::var("VLMBENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let install = wheel::cached_wheel(&choice, &cache, &python, env::consts::OS)
            .unwrap_or_else(|e| panic!("{e}"));
        (choice, install.root)
    })
}

fn deployment_target(choice: &WheelChoice) -> MacosVersion {
    choice.macos_deployment_target.expect("a macOS choice")
}

/// The sources whose `#include "mlx/..."` must resolve in the wheel: mlx-c as built here, and
/// vlmbench's own C++ shim.
fn includers() -> Vec<PathBuf> {
    vec![
        Path::new(env!("OUT_DIR")).join("mlx-c/mlx"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("native"),
    ]
}

/// The static libraries the macOS build links into every binary besides libmlx, as built here.
fn archives() -> Vec<PathBuf> {
    vec![
        Path::new(env!("VLMBENCH_MLXC_LIB_DIR")).join("libmlxc.a"),
        Path::new(env!("OUT_DIR")).join("libvlmbench_precompiled_kernel.a"),
    ]
}

// ---- the layout ----

/// What is wrong with the unpacked macOS wheel at `root` for a build for `dt`; empty if nothing.
fn layout_problems(root: &Path, dt: MacosVersion, includers: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    let install = MlxInstall {
        root: root.to_path_buf(),
    };
    let lib = install.lib_dir();
    match fs::read(lib.join("libmlx.dylib")) {
        Err(e) => problems.push(format!("no mlx/lib/libmlx.dylib ({e})")),
        Ok(bytes) => problems.extend(dylib_problems(&bytes, dt)),
    }
    match fs::read(lib.join("mlx.metallib")) {
        Err(e) => problems.push(format!("no mlx.metallib beside libmlx.dylib ({e})")),
        Ok(bytes) if !bytes.starts_with(b"MTLB") => {
            problems.push("mlx/lib/mlx.metallib is not a Metal library (no MTLB magic)".to_owned())
        }
        Ok(_) => {}
    }
    match install.version() {
        Some(v) if v == MLX_VERSION => {}
        Some(v) => problems.push(format!(
            "MLX's CMake package says version {v}, not {MLX_VERSION}"
        )),
        None => {
            problems.push("no version in mlx/share/cmake/MLX/MLXConfigVersion.cmake".to_owned())
        }
    }
    problems.extend(cmake_problems(root));
    problems.extend(header_problems(&root.join("mlx/include"), includers));
    problems
}

fn dylib_problems(bytes: &[u8], dt: MacosVersion) -> Vec<String> {
    let macho = match Mach::parse(bytes) {
        Ok(Mach::Binary(macho)) => macho,
        Ok(Mach::Fat(fat)) => match fat.find_cputype(cputype::CPU_TYPE_ARM64) {
            Ok(Some(arch)) => match MachO::parse(bytes, arch.offset as usize) {
                Ok(macho) => macho,
                Err(e) => return vec![format!("libmlx.dylib's arm64 slice cannot be read: {e}")],
            },
            _ => return vec!["libmlx.dylib has no arm64 slice".to_owned()],
        },
        Err(e) => return vec![format!("libmlx.dylib is not a Mach-O library: {e}")],
    };
    let mut problems = Vec::new();
    if macho.header.cputype != cputype::CPU_TYPE_ARM64 {
        problems.push(format!(
            "libmlx.dylib is for CPU type {}, not arm64",
            macho.header.cputype
        ));
    }
    if macho.header.filetype != header::MH_DYLIB {
        problems.push("libmlx.dylib is not a dynamic library".to_owned());
    }
    // The binaries find it through their rpath only if it calls itself @rpath/libmlx.dylib.
    if macho.name != Some("@rpath/libmlx.dylib") {
        problems.push(format!(
            "libmlx.dylib's install name is {:?}, not \"@rpath/libmlx.dylib\"",
            macho.name
        ));
    }
    match minimum_macos(&macho) {
        None => problems.push("libmlx.dylib records no minimum macOS".to_owned()),
        Some(needs) if needs > dt => problems.push(format!(
            "libmlx.dylib needs macOS {needs}, newer than the deployment target {dt}"
        )),
        Some(_) => {}
    }
    problems
}

/// LC_BUILD_VERSION's (or LC_VERSION_MIN_MACOSX's) minimum OS.
fn minimum_macos(macho: &MachO) -> Option<MacosVersion> {
    let packed = macho
        .load_commands
        .iter()
        .find_map(|lc| match &lc.command {
            CommandVariant::BuildVersion(b) => Some(b.minos),
            CommandVariant::VersionMinMacosx(v) => Some(v.version),
            _ => None,
        })?;
    Some(MacosVersion::new(packed >> 16, (packed >> 8) & 0xff))
}

/// MLX's CMake package: its config file, and every file its targets name (CMake stops on a missing one).
fn cmake_problems(root: &Path) -> Vec<String> {
    let cmake = root.join("mlx/share/cmake/MLX");
    let mut problems = Vec::new();
    for file in ["MLXConfig.cmake", "MLXTargets.cmake"] {
        if !cmake.join(file).is_file() {
            problems.push(format!("no mlx/share/cmake/MLX/{file}"));
        }
    }
    let Ok(entries) = fs::read_dir(&cmake) else {
        return problems;
    };
    let mut named = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("MLXTargets") && name.ends_with(".cmake")) {
            continue;
        }
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        for piece in text.split("${_IMPORT_PREFIX}/").skip(1) {
            let end = piece
                .find(|c: char| c == '"' || c == ';' || c == ')' || c.is_whitespace())
                .unwrap_or(piece.len());
            named.insert(piece[..end].to_owned());
        }
    }
    if named.is_empty() {
        problems.push("MLX's CMake targets name no files".to_owned());
    }
    // _IMPORT_PREFIX is the `mlx/` package (three levels above share/cmake/MLX).
    for path in named {
        if !root.join("mlx").join(&path).exists() {
            problems.push(format!(
                "MLX's CMake targets name mlx/{path}, which is missing"
            ));
        }
    }
    problems
}

/// Every `#include "mlx/..."` (not mlx-c's own `mlx/c/`) of `includers`, and what those headers
/// include in turn, must resolve under `include_dir`.
fn header_problems(include_dir: &Path, includers: &[PathBuf]) -> Vec<String> {
    let mut todo: Vec<(String, PathBuf)> = Vec::new();
    for source in includers {
        for file in source_files(source) {
            let text = fs::read_to_string(&file).unwrap_or_default();
            let dir = file.parent().unwrap_or(source).to_path_buf();
            todo.extend(
                includes(&text)
                    .filter(|inc| inc.starts_with("mlx/") && !inc.starts_with("mlx/c/"))
                    .map(|inc| (inc, dir.clone())),
            );
        }
    }
    if todo.is_empty() {
        return vec![
            "no MLX header is included by the mlx-c sources (wrong source path?)".to_owned(),
        ];
    }
    let mut seen = BTreeSet::new();
    let mut missing = BTreeSet::new();
    while let Some((inc, from)) = todo.pop() {
        let Some(found) = [include_dir.join(&inc), from.join(&inc)]
            .into_iter()
            .find(|p| p.is_file())
        else {
            if inc.starts_with("mlx/") {
                missing.insert(inc);
            }
            continue;
        };
        if !seen.insert(found.clone()) {
            continue;
        }
        let text = fs::read_to_string(&found).unwrap_or_default();
        let dir = found.parent().unwrap_or(include_dir).to_path_buf();
        todo.extend(includes(&text).map(|inc| (inc, dir.clone())));
    }
    missing
        .into_iter()
        .map(|inc| format!("no header {inc} under mlx/include"))
        .collect()
}

fn source_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files.extend(source_files(&p));
        } else if p
            .extension()
            .is_some_and(|e| e == "h" || e == "cpp" || e == "c")
        {
            files.push(p);
        }
    }
    files
}

/// The paths of `#include "..."` and `#include <...>` lines.
fn includes(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|line| {
        let rest = line.trim_start().strip_prefix('#')?.trim_start();
        let rest = rest.strip_prefix("include")?.trim_start();
        let close = match rest.chars().next()? {
            '"' => '"',
            '<' => '>',
            _ => return None,
        };
        let rest = &rest[1..];
        Some(rest[..rest.find(close)?].to_owned())
    })
}

// ---- the symbols ----

/// The undefined `mlx::` symbols (mangled) of the static libraries' objects (ELF or Mach-O).
fn needed_symbols(archives: &[PathBuf]) -> Result<BTreeSet<String>, String> {
    let mut needed = BTreeSet::new();
    for path in archives {
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let archive = goblin::archive::Archive::parse(&bytes)
            .map_err(|e| format!("{} is not an archive: {e}", path.display()))?;
        for member in archive.members() {
            let data = archive
                .extract(member, &bytes)
                .map_err(|e| format!("{}({member}): {e}", path.display()))?;
            for name in
                undefined_symbols(data).map_err(|e| format!("{}({member}): {e}", path.display()))?
            {
                if canonical(&name).contains("mlx::") {
                    needed.insert(name);
                }
            }
        }
    }
    Ok(needed)
}

fn undefined_symbols(object: &[u8]) -> Result<Vec<String>, String> {
    match goblin::Object::parse(object).map_err(|e| e.to_string())? {
        goblin::Object::Elf(elf) => Ok(elf
            .syms
            .iter()
            .filter(|s| s.st_shndx == goblin::elf::section_header::SHN_UNDEF as usize)
            .filter(|s| s.st_bind() != goblin::elf::sym::STB_LOCAL)
            .filter_map(|s| elf.strtab.get_at(s.st_name))
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()),
        goblin::Object::Mach(Mach::Binary(macho)) => Ok(macho
            .symbols()
            .flatten()
            .filter(|(_, nlist)| nlist.is_undefined() && nlist.is_global())
            .map(|(name, _)| name.strip_prefix('_').unwrap_or(name).to_owned())
            .collect()),
        _ => Err("neither an ELF nor a Mach-O object".to_owned()),
    }
}

/// The names a Mach-O library's export trie (what dyld binds against) holds, without the leading `_`.
fn exported_symbols(dylib: &[u8]) -> Result<BTreeSet<String>, String> {
    let macho = match Mach::parse(dylib).map_err(|e| e.to_string())? {
        Mach::Binary(macho) => macho,
        Mach::Fat(_) => return Err("a universal library: read its arm64 slice".to_owned()),
    };
    let exports = macho.exports().map_err(|e| e.to_string())?;
    Ok(exports
        .iter()
        .map(|e| e.name.strip_prefix('_').unwrap_or(&e.name).to_owned())
        .collect())
}

/// A symbol's demangled name with libstdc++'s and libc++'s spellings made one: `std::__1::` and
/// `std::__cxx11::` are `std::`, ABI tags are dropped, `long long` (int64_t on macOS) is `long`
/// (int64_t on Linux; both 64-bit), the short names of the standard streams and string are spelled
/// out, and spaces are dropped (demanglers place them differently). A name that does not demangle
/// stays as it is.
fn canonical(mangled: &str) -> String {
    let demangled = cpp_demangle::Symbol::new(mangled)
        .ok()
        .and_then(|s| s.demangle().ok())
        .unwrap_or_else(|| mangled.to_owned());
    let mut text = demangled
        .replace("std::__1::", "std::")
        .replace("std::__cxx11::", "std::");
    while let Some(start) = text.find("[abi:") {
        let end = text[start..]
            .find(']')
            .map_or(text.len(), |e| start + e + 1);
        text.replace_range(start..end, "");
    }
    let mut text: String = text
        .replace("unsigned long long", "unsigned long")
        .replace("long long", "long")
        .split_whitespace()
        .collect();
    for (short, long) in [
        (
            "std::ostream",
            "std::basic_ostream<char,std::char_traits<char>>",
        ),
        (
            "std::istream",
            "std::basic_istream<char,std::char_traits<char>>",
        ),
        (
            "std::iostream",
            "std::basic_iostream<char,std::char_traits<char>>",
        ),
        (
            "std::string",
            "std::basic_string<char,std::char_traits<char>,std::allocator<char>>",
        ),
    ] {
        text = replace_name(&text, short, long);
    }
    text
}

/// `text` with the name `from` (not a longer name it begins) replaced by `to`.
fn replace_name(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let whole = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The needed symbols (demangled) that the exports lack.
fn missing_symbols(needed: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    let exported: BTreeSet<String> = exported.iter().map(|s| canonical(s)).collect();
    needed
        .iter()
        .map(|s| canonical(s))
        .filter(|name| !exported.contains(name))
        .collect()
}

// ---- the checks, on the real wheel ----

#[test]
fn the_macos_wheel_is_the_one_the_build_would_take() {
    let (choice, root) = macos_wheel();
    assert_eq!(choice.package, "mlx-metal");
    let tags = MlxInstall { root: root.clone() }.platform_tags();
    assert_eq!(tags, vec![choice.platform.to_owned()], "{}", root.display());
}

#[test]
fn the_macos_wheel_has_the_layout_the_build_expects() {
    let (choice, root) = macos_wheel();
    let problems = layout_problems(root, deployment_target(choice), &includers());
    assert!(
        problems.is_empty(),
        "{}: {}",
        root.display(),
        problems.join("; ")
    );
}

#[test]
fn every_mlx_symbol_mlx_c_needs_is_exported_by_the_macos_libmlx() {
    let (_, root) = macos_wheel();
    let needed = needed_symbols(&archives()).unwrap();
    // mlx-c calls hundreds of MLX functions; far fewer means the objects were not read.
    assert!(needed.len() > 300, "only {} mlx:: symbols", needed.len());
    let exported = exported_symbols(&fs::read(root.join("mlx/lib/libmlx.dylib")).unwrap()).unwrap();
    let missing = missing_symbols(&needed, &exported);
    assert!(
        missing.is_empty(),
        "{} of {} not exported: {}",
        missing.len(),
        needed.len(),
        missing.join("; ")
    );
}

#[test]
fn the_symbol_doctor_finds_libmlx_by_is_exported_by_the_macos_libmlx() {
    let (_, root) = macos_wheel();
    let exported = exported_symbols(&fs::read(root.join("mlx/lib/libmlx.dylib")).unwrap()).unwrap();
    let anchor = mlx_sys::loaded::ANCHOR_SYMBOL.to_str().unwrap();
    // Looked up by its exact mangled name (dlsym), not a canonical one.
    assert!(exported.contains(anchor), "{anchor}");
}

// ---- the checks fail when they should ----

#[test]
fn a_symbol_the_macos_library_lacks_fails_the_check() {
    let (_, root) = macos_wheel();
    let mut needed = needed_symbols(&archives()).unwrap();
    needed.insert("_ZN3mlx4core21not_exported_anywhereEv".to_owned());
    let exported = exported_symbols(&fs::read(root.join("mlx/lib/libmlx.dylib")).unwrap()).unwrap();
    assert_eq!(
        missing_symbols(&needed, &exported),
        vec!["mlx::core::not_exported_anywhere()".to_owned()]
    );
}

#[test]
fn libstdcxx_and_libcxx_spellings_of_one_function_match_and_other_types_do_not() {
    // (Linux, libstdc++; macOS, libc++), as mlx-c needs them and the macOS library exports them.
    let pairs = [
        (
            "_ZN3mlx4core10as_stridedENS0_5arrayENS0_11SmallVectorIiLm10ESaIiEEENS2_IlLm10ESaIlEEEmSt7variantIJSt9monostateNS0_6StreamENS0_17ThreadLocalStreamENS0_6DeviceENSB_10DeviceTypeEEE",
            "_ZN3mlx4core10as_stridedENS0_5arrayENS0_11SmallVectorIiLm10ENSt3__19allocatorIiEEEENS2_IxLm10ENS4_IxEEEEmNS3_7variantIJNS3_9monostateENS0_6StreamENS0_17ThreadLocalStreamENS0_6DeviceENSD_10DeviceTypeEEEE",
        ),
        (
            "_ZN3mlx4core11device_infoB5cxx11ERKNS0_6DeviceE",
            "_ZN3mlx4core11device_infoERKNS0_6DeviceE",
        ),
        (
            "_ZN3mlx4core10checkpointESt8functionIFSt6vectorINS0_5arrayESaIS3_EERKS5_EE",
            "_ZN3mlx4core10checkpointENSt3__18functionIFNS1_6vectorINS0_5arrayENS1_9allocatorIS4_EEEERKS7_EEE",
        ),
        (
            "_ZN3mlx4corelsERSoNS0_5arrayE",
            "_ZN3mlx4corelsERNSt3__113basic_ostreamIcNS1_11char_traitsIcEEEENS0_5arrayE",
        ),
    ];
    for (linux, macos) in pairs {
        assert_eq!(canonical(linux), canonical(macos));
    }
    // f(int) is not f(long), nor g(float) g(double); std::ostream is not std::ostreambuf.
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let needed = set(&["_ZN3mlx4core1fEi", "_ZN3mlx4core1gEf"]);
    let exported = set(&["_ZN3mlx4core1fEl", "_ZN3mlx4core1gEd"]);
    assert_eq!(
        missing_symbols(&needed, &exported),
        vec![
            "mlx::core::f(int)".to_owned(),
            "mlx::core::g(float)".to_owned()
        ]
    );
    assert_eq!(
        replace_name("std::ostreambuf&", "std::ostream", "X"),
        "std::ostreambuf&"
    );
    assert_eq!(replace_name("(std::ostream&)", "std::ostream", "X"), "(X&)");
}

/// `real` recreated under `dst` as directories and symbolic links to its files, to doctor cheaply.
fn mirror(real: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(real).unwrap().flatten() {
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            mirror(&entry.path(), &to);
        } else {
            std::os::unix::fs::symlink(entry.path(), &to).unwrap();
        }
    }
}

#[test]
fn a_broken_macos_wheel_layout_fails_the_check() {
    let (choice, real) = macos_wheel();
    let dt = deployment_target(choice);
    type Doctor = fn(&Path);
    let cases: [(&str, Doctor, &str); 8] = [
        ("intact", |_| {}, ""),
        (
            "no metallib",
            |r| fs::remove_file(r.join("mlx/lib/mlx.metallib")).unwrap(),
            "no mlx.metallib beside libmlx.dylib",
        ),
        (
            "no libmlx",
            |r| fs::remove_file(r.join("mlx/lib/libmlx.dylib")).unwrap(),
            "no mlx/lib/libmlx.dylib",
        ),
        (
            "libmlx not Mach-O",
            |r| {
                let lib = r.join("mlx/lib/libmlx.dylib");
                fs::remove_file(&lib).unwrap();
                fs::write(lib, b"\x7fELF not a Mach-O library").unwrap();
            },
            "libmlx.dylib is not a Mach-O library",
        ),
        (
            "a header mlx-c includes",
            |r| fs::remove_file(r.join("mlx/include/mlx/fast.h")).unwrap(),
            "no header mlx/fast.h under mlx/include",
        ),
        (
            "a header an MLX header includes",
            |r| fs::remove_file(r.join("mlx/include/mlx/array.h")).unwrap(),
            "no header mlx/array.h under mlx/include",
        ),
        (
            "another MLX version",
            |r| {
                let file = r.join("mlx/share/cmake/MLX/MLXConfigVersion.cmake");
                fs::remove_file(&file).unwrap();
                fs::write(file, "set(PACKAGE_VERSION \"0.32.4\")\n").unwrap();
            },
            "MLX's CMake package says version 0.32.4, not 0.32.2",
        ),
        (
            "an include directory the CMake targets name",
            |r| fs::remove_dir_all(r.join("mlx/include/metal_cpp")).unwrap(),
            "MLX's CMake targets name mlx/include/metal_cpp, which is missing",
        ),
    ];
    for (what, doctor, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        mirror(&real.join("mlx"), &dir.path().join("mlx"));
        doctor(dir.path());
        let problems = layout_problems(dir.path(), dt, &includers());
        if expected.is_empty() {
            assert!(problems.is_empty(), "{what}: {}", problems.join("; "));
        } else {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{what}: {problems:?}"
            );
        }
        assert!(problems.iter().all(|p| !p.contains('\n')), "{problems:?}");
    }
}

#[test]
fn a_libmlx_for_a_newer_macos_than_the_deployment_target_fails_the_check() {
    // As the wheel tagged 26.0 (libmlx for 26.2) would on macOS 26.0 and 26.1.
    let (_, real) = macos_wheel();
    let bytes = fs::read(real.join("mlx/lib/libmlx.dylib")).unwrap();
    let Ok(Mach::Binary(macho)) = Mach::parse(&bytes) else {
        panic!("a thin Mach-O library");
    };
    let needs = minimum_macos(&macho).unwrap();
    let older = MacosVersion::new(needs.major - 1, 0);
    assert!(dylib_problems(&bytes, needs).is_empty());
    let problems = dylib_problems(&bytes, older);
    assert_eq!(
        problems,
        vec![format!(
            "libmlx.dylib needs macOS {needs}, newer than the deployment target {older}"
        )]
    );
}
