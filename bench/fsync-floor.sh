#!/usr/bin/env bash
# The disk floor under any durable write on this machine: how long one 4 KiB
# write + fdatasync takes, median and p99 over COUNT writes, both appending to
# a growing file (what a log does: the file size changes, so the filesystem
# journal is written too) and overwriting a preallocated file (the cheapest
# durable write there is).
#
# Usage: bench/fsync-floor.sh [DIR] [COUNT]
#   DIR    a directory on the filesystem to measure (default: $TMPDIR or /tmp);
#          put it where the nodes keep their data, or the number means nothing
#   COUNT  writes per mode (default 2000)
#
# Python is used only as a timer around the system calls (perf_counter_ns
# around os.write + os.fdatasync); its own overhead is about a microsecond.
set -euo pipefail

dir=${1:-${TMPDIR:-/tmp}}
count=${2:-2000}

command -v python3 >/dev/null || { echo "fsync-floor: python3 is needed" >&2; exit 1; }

python3 - "$dir" "$count" <<'PY'
import os, sys, tempfile, time

directory, count = sys.argv[1], int(sys.argv[2])
block = b"x" * 4096

def measure(preallocate):
    fd, path = tempfile.mkstemp(dir=directory, prefix="fsync-floor-")
    try:
        if preallocate:
            os.posix_fallocate(fd, 0, 4096 * count)
            # Write the blocks once so the overwrite pass changes no metadata.
            for _ in range(count):
                os.write(fd, block)
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        samples = []
        for _ in range(count):
            start = time.perf_counter_ns()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.perf_counter_ns() - start)
        samples.sort()
        return samples[len(samples) // 2] / 1e6, samples[len(samples) * 99 // 100] / 1e6
    finally:
        os.close(fd)
        os.unlink(path)

for name, pre in (("append", False), ("preallocated", True)):
    p50, p99 = measure(pre)
    print(f"4 KiB write + fdatasync, {name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({count} writes)")
PY
