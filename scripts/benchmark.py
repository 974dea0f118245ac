#!/usr/bin/env python3
"""Measure a real mount of the local server and write the figures to docs/benchmarks.md.

Run from the repository: `.venv/bin/python scripts/benchmark.py [--latency SEC]`. Everything
runs on 127.0.0.1 against temporary directories; the server and the mount are stopped at
the end. `--latency` adds a delay to every request, to estimate a remote site.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from firecrest_fs.server.launch import LocalServer
from firecrest_fs.testing import MountProcess

DOWNLOAD = "GET /filesystem/{system_name}/ops/download"
LISTING = "GET /filesystem/{system_name}/ops/ls"
STAT = "GET /filesystem/{system_name}/ops/stat"
CHECKSUM = "GET /filesystem/{system_name}/ops/checksum"


def requests_made(server: LocalServer) -> int:
    return sum(count for key, count in server.counters().items() if not key.startswith(("GET /_local", "DELETE /_local")))


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def machine_description() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return (f"{os.cpu_count()} cores ({model}), {memory_kib / 2**20:.0f} GiB memory, "
            f"{platform.platform()}, Python {platform.python_version()}")


def run(latency: float, files: int, big_dir: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    scratch = Path(tempfile.mkdtemp(prefix="firecrest-fs-bench-"))
    served = scratch / "served"
    work = scratch / "work"
    served.mkdir()
    work.mkdir()
    generator = random.Random(1)
    try:
        with LocalServer(served, work, latency=latency, job_queue_delay=0.5, job_run_delay=0.5,
                         log_file=scratch / "server.log") as server:
            big = served / "big"
            big.mkdir()
            for index in range(big_dir):
                (big / f"file{index:05d}").write_bytes(b"x" * (index % 100))

            def mount(name: str) -> MountProcess:
                return MountProcess(server, served, scratch / name, scratch / f"{name}.log", options="", debug=False)

            with mount("mnt1") as first:
                server.reset_counters()
                seconds = timed(lambda: subprocess.run(["ls", "-l", str(first.path / "big")], check=True,
                                                       stdout=subprocess.DEVNULL))
                counts = server.counters()
                rows.append((f"`ls -l` of {big_dir} files, cold", f"{seconds:.2f} s",
                             f"{counts.get(LISTING, 0)} ls, {counts.get(STAT, 0)} stat"))

                small = first.path / "small"
                small.mkdir()
                payloads = [generator.randbytes(4096) for _ in range(files)]
                server.reset_counters()

                def write_small() -> None:
                    for index, payload in enumerate(payloads):
                        (small / f"f{index:04d}").write_bytes(payload)

                seconds = timed(write_small)
                rows.append((f"write {files} new 4 KiB files", f"{seconds / files * 1000:.1f} ms per file",
                             f"{requests_made(server) / files:.1f} requests per file"))

                tree = scratch / "tree"
                tree.mkdir()
                for index, payload in enumerate(payloads[:50]):
                    (tree / f"t{index:03d}").write_bytes(payload)
                server.reset_counters()
                seconds = timed(lambda: subprocess.run(["rsync", "-a", f"{tree}/", str(first.path / "synced")],
                                                       check=True))
                rows.append(("`rsync -a` of 50 new 4 KiB files (times kept)", f"{seconds / 50 * 1000:.1f} ms per file",
                             f"{requests_made(server) / 50:.1f} requests per file"))
                server.reset_counters()
                seconds = timed(lambda: subprocess.run(["rsync", "-a", f"{tree}/", str(first.path / "synced")],
                                                       check=True))
                rows.append(("the same `rsync -a` again (nothing to copy)", f"{seconds:.2f} s",
                             f"{requests_made(server)} requests"))

                content = generator.randbytes(3 * 2**20)
                seconds = timed(lambda: (first.path / "three-mib.bin").write_bytes(content))
                rows.append(("write one 3 MiB file", f"{3 / seconds:.1f} MiB/s", f"{seconds:.2f} s"))

                server.reset_counters()
                seconds = timed(lambda: (first.path / "small" / "f0000").rename(first.path / "small" / "renamed"))
                rows.append(("rename a 4 KiB file (archive route)", f"{seconds * 1000:.0f} ms",
                             f"{requests_made(server)} requests"))
                server.reset_counters()
                seconds = timed(lambda: (first.path / "small").rename(first.path / "small-moved"))
                rows.append(("rename a directory (transfer/mv job, 0.5 s queue + 0.5 s run)",
                             f"{seconds:.2f} s", f"{requests_made(server)} requests"))

            with mount("mnt2") as second:
                names = sorted((second.path / "small-moved").iterdir())
                server.reset_counters()
                seconds = timed(lambda: [path.read_bytes() for path in names])
                counts = server.counters()
                rows.append((f"read {len(names)} 4 KiB files, cold", f"{seconds / len(names) * 1000:.1f} ms per file",
                             f"{counts.get(DOWNLOAD, 0)} downloads"))
                server.reset_counters()
                seconds = timed(lambda: [path.read_bytes() for path in names])
                counts = server.counters()
                rows.append((f"read the same {len(names)} files again (changed < 1 min ago)",
                             f"{seconds / len(names) * 1000:.1f} ms per file",
                             f"{counts.get(DOWNLOAD, 0)} downloads, {counts.get(CHECKSUM, 0)} checksums"))
                server.reset_counters()
                seconds = timed(lambda: [path.read_bytes() for path in names])
                rows.append(("and once more", f"{seconds / len(names) * 1000:.1f} ms per file",
                             f"{requests_made(server)} requests"))
                seconds = timed(lambda: (second.path / "three-mib.bin").read_bytes())
                rows.append(("read one 3 MiB file, cold", f"{3 / seconds:.1f} MiB/s", f"{seconds:.2f} s"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def write_page(path: Path, command: str, sections: list[tuple[float, list[tuple[str, str, str]]]]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Real mounts of the bundled local server on 127.0.0.1, measured by `scripts/benchmark.py`.",
        "The server runs real commands (`ls`, `base64`, `tar`) on a local disk, so these figures show",
        "the mount's own costs. On a real site every request also pays the network round trip and the",
        "server's SSH command; the request counts carry over, and the second table adds 20 ms to each.",
        "A file changed less than a minute ago is confirmed once with `ops/checksum` when it is read",
        "again, because the server's times are whole seconds; older files need no request at all.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
    ]
    for latency, rows in sections:
        lines += [f"## Added latency per request: {latency * 1000:.0f} ms", "",
                  "| what | time | requests / detail |", "|---|---|---|"]
        lines += [f"| {what} | {time_taken} | {detail} |" for what, time_taken, detail in rows]
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, action="append",
                        help="seconds the server adds to each request; repeat for several runs (default: 0 and 0.02)")
    parser.add_argument("--files", type=int, default=200, help="number of small files (default 200)")
    parser.add_argument("--big-dir", type=int, default=5000, help="entries of the large directory (default 5000)")
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"), help="page to write")
    args = parser.parse_args()
    latencies = args.latency or [0.0, 0.02]
    sections = []
    for latency in latencies:
        rows = run(latency, args.files, args.big_dir)
        sections.append((latency, rows))
        for row in rows:
            print(" | ".join(row))
    command = "python scripts/benchmark.py " + " ".join(f"--latency {value}" for value in latencies)
    write_page(args.output, command, sections)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
