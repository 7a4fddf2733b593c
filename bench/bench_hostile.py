"""Hostile input at full size: each case of tests/data/hostile/make_hostile.py (``FULL`` sizes),
read as ingest reads it under the default limits, one fresh process per file; reports each
file's outcome (its error, or what was read and quarantined), wall time and peak RSS.

    .venv/bin/python bench/bench_hostile.py [--dir DIR] [--keep] [--chunk-size N] [--timeout S] [--case NAME ...]

Goal: every file under 30 s and 1 GB on a 2-core machine. The files (about 600 MB, most of it
the two over-long lines) are written to a temporary folder, removed afterwards unless --keep.
Figures go to docs/benchmarks.md with the date and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vcfstream.errors import VcfstreamError
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import open_source
from vcfstream.vcf.validation import check_header

HOSTILE = Path(__file__).resolve().parents[1] / "tests" / "data" / "hostile"


def _make_hostile() -> Any:
    """tests/data/hostile/make_hostile.py's functions (it is a script, not a package)."""
    return SimpleNamespace(**runpy.run_path(str(HOSTILE / "make_hostile.py")))


def read_one(path: str, chunk_size: int) -> dict[str, Any]:
    """What ingest's reading makes of one file (in this process)."""
    try:
        source = open_source(path)
        header = check_header(source.path, source.header_lines)
        if header.errors:
            return {"error": header.errors[0].rule, "line": header.errors[0].line}
        ctx = ReadContext.open("bench", "GRCh38", source)
        records = alleles = 0
        rules: Counter[str] = Counter()
        for chunk in plan_chunks(source, chunk_size):
            read = read_chunk(ctx, chunk)
            records, alleles = records + read.records, alleles + len(read.batch)
            rules.update(f"{q.rule}@{q.line}" for q in read.quarantined)
        return {"records": records, "alleles": alleles, "quarantined": sorted(rules)}
    except VcfstreamError as exc:
        return {"error": getattr(exc, "rule", type(exc).__name__), "line": getattr(exc, "line", None)}


def measure(path: Path, chunk_size: int, timeout: float) -> dict[str, Any]:
    """Read ``path`` in a child process: its outcome, wall time and peak RSS (the child's own
    ``ru_maxrss``, taken when it is reaped)."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, __file__, "--one", str(path), "--chunk-size", str(chunk_size)],
                             stdout=subprocess.PIPE, text=True)
    guard = threading.Timer(timeout, child.kill)
    guard.start()
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    guard.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    outcome = json.loads(output) if output.strip() else {"error": f"exit status {child.returncode}"
                                                         + (" (killed by the timeout)" if seconds >= timeout else "")}
    return {"file": path.name, "size": path.stat().st_size, "seconds": seconds, "peak_rss": usage.ru_maxrss * 1024,
            **outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--chunk-size", type=int, default=50_000, help="ingest's chunk_size (default 50,000)")
    parser.add_argument("--timeout", type=float, default=600.0, help="a file taking longer is killed")
    parser.add_argument("--case", action="append", help="only this case (repeatable; default: every case)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(read_one(args.one, args.chunk_size)))
        return
    directory = args.dir or Path(tempfile.mkdtemp(prefix="hostile-"))
    make = _make_hostile()
    try:
        unknown = sorted(set(args.case or ()) - set(make.CASES))
        if unknown:
            parser.error(f"no case {', '.join(unknown)} (cases: {', '.join(make.CASES)})")
        started = time.monotonic()
        written = make.write_cases(directory, make.FULL, args.case)
        print(f"wrote the full-size cases to {directory} in {time.monotonic() - started:.0f} s")
        print(f"{'case':13} {'file':30} {'size':>10} {'wall s':>7} {'peak RSS':>9}  outcome")
        for case, paths in written.items():
            for path in paths:
                if path.name.endswith(".tbi"):
                    continue
                row = measure(path, args.chunk_size, args.timeout)
                outcome = (f"rejected: {row['error']} (line {row.get('line')})" if "error" in row else
                           f"{row['records']} records, {row['alleles']} alleles read; quarantined: "
                           f"{', '.join(row['quarantined']) or 'none'}")
                print(f"{case:13} {row['file']:30} {row['size'] / 2**20:8.1f}MB {row['seconds']:7.1f} "
                      f"{row['peak_rss'] / 2**20:7.0f}MB  {outcome}", flush=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
