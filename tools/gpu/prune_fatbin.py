#!/usr/bin/env python3
"""Keeps one GPU architecture's code in a CUDA shared library's fat binaries, so it fits the device
tool's carry limit (the prebuilt libggml-cuda.so of node-llama-cpp holds PTX for compute 7.5, 8.0
and 9.0 and SASS for 8.6, 8.9, 12.0 and 12.1: 159 MB).

    tools/gpu/prune_fatbin.py IN.so OUT.so [--kind ptx|sass] [--arch 90]

Each fat binary container in the `.nv_fatbin` section keeps its offset and size (the host code
registers containers by address); inside it, the kept entries move to the front, the header's size
shrinks to them, and the rest is zeros (which xz packs to nothing). The CUDA runtime then sees only
the kept entries: for an H100 or H200, compute 9.0 PTX, which the driver compiles once (its JIT
cache keeps the result). Fails, naming the container, when one has no entry of that kind and arch.

`--ptx-version 9.0` rewrites each kept PTX's `.version` line: a driver JIT-compiles only the PTX ISA
versions of its own CUDA release, and the package's PTX says 9.1 (CUDA 13.1) where the GPU machine's
driver is CUDA 13.0's. The entries are zstd frames (flag 0x8000): they are unpacked with the `zstd`
tool, edited, packed again, and the entry header's sizes and PTX version updated. Where the PTX uses an
instruction its stated version lacks, the driver's JIT refuses it at load and says so.
"""
import argparse
import re
import struct
import subprocess
import sys

MAGIC = 0xBA55ED50
KINDS = {"ptx": 1, "sass": 2}
ZSTD_FLAG = 0x8000


def with_ptx_version(entry, version):
    """One fat binary entry (header and payload) with its PTX's `.version` set to `version`."""
    header = struct.unpack_from("<HHIQ", entry)[2]
    flags = struct.unpack_from("<Q", entry, 40)[0]
    if not flags & ZSTD_FLAG:
        sys.exit(f"prune_fatbin.py: error: a PTX entry is not zstd-packed (flags {flags:#x}): unknown layout")
    packed = struct.unpack_from("<I", entry, 16)[0]
    ptx = subprocess.run(["zstd", "-dc"], input=entry[header : header + packed], capture_output=True, check=True).stdout
    ptx, n = re.subn(rb"^\.version \d+\.\d+$", b".version " + version.encode(), ptx, count=1, flags=re.M)
    if n != 1:
        sys.exit("prune_fatbin.py: error: a PTX entry has no `.version` line")
    new = subprocess.run(["zstd", "-12", "-c"], input=ptx, capture_output=True, check=True).stdout
    padded = new + bytes(-len(new) % 16)
    head = bytearray(entry[:header])
    struct.pack_into("<Q", head, 8, len(padded))
    struct.pack_into("<I", head, 16, len(new))
    struct.pack_into("<Q", head, 56, len(ptx))
    major, minor = (int(x) for x in version.split("."))
    struct.pack_into("<HH", head, 24, minor, major)  # the header states the PTX version too
    return bytes(head) + padded


def fatbin_section(path):
    out = subprocess.check_output(["readelf", "-S", "-W", path], text=True)
    for line in out.splitlines():
        if ".nv_fatbin" in line:
            fields = line.split("]", 1)[1].split()
            return int(fields[3], 16), int(fields[4], 16)
    sys.exit(f"prune_fatbin.py: error: {path} has no .nv_fatbin section")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--kind", choices=KINDS, default="ptx")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--ptx-version", help="rewrite each kept PTX's .version (e.g. 9.0)")
    a = ap.parse_args()
    data = bytearray(open(a.src, "rb").read())
    off, size = fatbin_section(a.src)
    pos, end, containers, kept_bytes = off, off + size, 0, 0
    while pos < end:
        magic, _version, header, body = struct.unpack_from("<IHHQ", data, pos)
        if magic != MAGIC:  # padding between containers
            pos += 8
            continue
        containers += 1
        entry, stop, kept = pos + header, pos + header + body, []
        while entry < stop:
            kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if kind == KINDS[a.kind] and arch == a.arch:
                kept_entry = bytes(data[entry : entry + entry_header + entry_size])
                if a.ptx_version and a.kind == "ptx":
                    kept_entry = with_ptx_version(kept_entry, a.ptx_version)
                kept.append(kept_entry)
            entry += entry_header + entry_size
        if not kept:
            sys.exit(f"prune_fatbin.py: error: container {containers} (at {pos:#x}) has no {a.kind} for {a.arch}")
        new = b"".join(kept)
        if len(new) > body:
            sys.exit(f"prune_fatbin.py: error: container {containers} (at {pos:#x}) outgrew its space")
        data[pos + header : stop] = new + bytes(body - len(new))
        struct.pack_into("<Q", data, pos + 8, len(new))
        kept_bytes += len(new)
        pos = stop
    open(a.dst, "wb").write(data)
    print(f"prune_fatbin.py: {containers} containers, kept {kept_bytes} bytes of {a.kind} {a.arch}", file=sys.stderr)


if __name__ == "__main__":
    main()
