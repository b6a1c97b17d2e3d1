#!/usr/bin/env python3
"""Compiles vlmbench's CUDA kernels (models/src/kernels/*.cu) to PTX with NVRTC: X.cu -> X.ptx.

Run it after every change to a .cu or dtypes.cuh (a unit test fails while a PTX is older than its source).
NVRTC needs no GPU: it comes from NVIDIA's `nvidia-cuda-nvrtc` wheel, downloaded once with pip into
the vlmbench cache. Each (variant, dtype) instantiation becomes its own PTX module, registered
with MLX on its own (models/src/kernels/precompiled.rs).

    python3 tools/gpu/build-ptx.py
"""

import ctypes
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

NVRTC_VERSION = "13.0.88"
# PTX for compute capability 8.0 runs on A100, H100, H200 and newer (the driver compiles it to
# the GPU's own instructions at load, once, and keeps the result in its cache).
ARCH = "compute_80"
DTYPES = {"bfloat16": "Bf16", "float16": "F16", "float32": "float"}
# Source -> (variant as Rust names it, kernel template).
KERNELS = {
    "qgemv4.cu": [("qgemv4", "qgemv4")],
}
HEADERS = ["dtypes.cuh"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
KERNEL_DIR = ROOT / "models/src/kernels"


def nvrtc_library() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("VLMBENCH_CACHE_DIR") or
                         pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "vlmbench")
    home = cache / f"nvrtc-{NVRTC_VERSION}"
    lib = home / "nvidia/cu13/lib/libnvrtc.so.13"
    if lib.is_file():
        return lib
    with tempfile.TemporaryDirectory() as tmp:
        print(f"fetching nvidia-cuda-nvrtc=={NVRTC_VERSION} with pip", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", f"nvidia-cuda-nvrtc=={NVRTC_VERSION}", "-d", tmp], check=True)
        wheel = next(pathlib.Path(tmp).glob("nvidia_cuda_nvrtc-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(home)
    return lib


class Nvrtc:
    def __init__(self, path: pathlib.Path):
        # NVRTC dlopens its builtins library by name: load it first so that lookup finds it.
        ctypes.CDLL(str(next(path.parent.glob("libnvrtc-builtins.so.*"))), mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(str(path))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(self, status: int, what: str, log: str = "") -> None:
        if status != 0:
            message = self.lib.nvrtcGetErrorString(status).decode()
            sys.exit(f"error: NVRTC {what} failed: {message}\n{log}")

    def compile(self, name: str, source: str, headers: dict, expression: str) -> tuple[str, str]:
        """PTX holding only `expression`'s instantiation, and the kernel's lowered (mangled) name."""
        prog = ctypes.c_void_p()
        texts = (ctypes.c_char_p * len(headers))(*(t.encode() for t in headers.values()))
        names = (ctypes.c_char_p * len(headers))(*(n.encode() for n in headers))
        self.check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), len(headers),
                                               texts, names), "nvrtcCreateProgram")
        self.check(self.lib.nvrtcAddNameExpression(prog, expression.encode()), "nvrtcAddNameExpression")
        options = [f"--gpu-architecture={ARCH}".encode(), b"--std=c++17"]
        argv = (ctypes.c_char_p * len(options))(*options)
        status = self.lib.nvrtcCompileProgram(prog, len(options), argv)
        log_size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(log_size))
        log = ctypes.create_string_buffer(log_size.value)
        self.lib.nvrtcGetProgramLog(prog, log)
        self.check(status, f"compiling {expression}", log.value.decode())
        lowered = ctypes.c_char_p()
        self.check(self.lib.nvrtcGetLoweredName(prog, expression.encode(), ctypes.byref(lowered)),
                   "nvrtcGetLoweredName")
        name = lowered.value.decode()
        size = ctypes.c_size_t()
        self.check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        self.check(self.lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        self.lib.nvrtcDestroyProgram(ctypes.byref(prog))
        return ptx.value.decode(), name


def strip_comments(ptx: str) -> str:
    # NVRTC's banner comments only lengthen what MLX hashes per launch.
    return "\n".join(line for line in ptx.splitlines() if line.strip() and not line.lstrip().startswith("//")) + "\n"


def main() -> None:
    headers = {h: (KERNEL_DIR / h).read_text() for h in HEADERS}
    nvrtc = Nvrtc(nvrtc_library())
    for name, variants in KERNELS.items():
        source = (KERNEL_DIR / name).read_text()
        # The digest covers the headers too: models/src/kernels/precompiled.rs checks it.
        digest = hashlib.sha256((source + "".join(headers.values())).encode()).hexdigest()
        out = [f"// Generated by tools/gpu/build-ptx.py from {name} with NVRTC {NVRTC_VERSION} for {ARCH}; do not edit.\n",
               f"// source-sha256 {digest}\n"]
        for variant, template in variants:
            for dtype, cuda_type in DTYPES.items():
                ptx, symbol = nvrtc.compile(name, source, headers, f"{template}<{cuda_type}>")
                out.append(f"//@kernel {variant} {dtype} {symbol}\n")
                out.append(strip_comments(ptx))
        output = KERNEL_DIR / name.replace(".cu", ".ptx")
        output.write_text("".join(out))
        print(f"wrote {output.relative_to(ROOT)} ({output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
