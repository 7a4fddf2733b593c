"""Micro-benchmark of the per-chunk read path: ``vcfstream.vcf.reader.read_chunk`` (validate, split,
normalize, key, build each message's JSON) over a synthetic VCF, against a bare reference loop.

Generates (once, cached under bench/out/) a bgzipped+indexed VCF with ``bench/synth_vcf.py``
(~82% SNVs, ~14% indels, ~4% multi-allelic; FORMAT GT:AD:DP:GQ), plans its chunks as ingest
does (``plan_chunks``), then times, as CPU time of this process (best of ``--repeat``):
  * reference: the same raw lines of every chunk (``iter_chunk_lines``), decoded and split on TAB;
  * validation only: the same, plus ``RecordChecker.check`` per line (the validator's share);
  * ``read_chunk`` on every chunk, with a fresh ``ReadContext`` per pass (cold caches included);
  * with ``--pool``, also every chunk through a reader process (``ReadPool``): wall time, and the
    CPU time of this process (receiving and decoding the answers: what the flow's process pays).
Prints records/s and alleles/s of both and the ratio read_chunk/reference time. The garbage
collector runs at the reader processes' threshold (``vcfstream.runtime.resources.GC_THRESHOLD``);
``--default-gc`` keeps Python's default for comparison.

    .venv/bin/python bench/bench_reader.py [--records 50000] [--samples 20] [--profile]
    .venv/bin/python bench/bench_reader.py --path some.vcf.gz   # any file instead of the synthetic one
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from synth_vcf import generate

from vcfstream.runtime.readpool import ReadPool
from vcfstream.runtime.resources import GC_THRESHOLD
from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.reader import ReadContext, read_chunk
from vcfstream.vcf.source import iter_chunk_lines, open_source
from vcfstream.vcf.validation import RecordChecker


def synthetic(records: int, samples: int, seed: int) -> Path:
    path = REPO / "bench" / "out" / f"synth_{records}_{samples}s_{seed}.vcf.gz"
    if not path.exists() or not Path(str(path) + ".tbi").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, records, samples, seed)
    return path


def bare_split(source, chunks) -> int:
    """The reference loop: what any reader must do at least (decompress, decode, split)."""
    n = 0
    for chunk in chunks:
        for _, raw in iter_chunk_lines(source, chunk):
            raw.decode("utf-8").rstrip("\r\n").split("\t")
            n += 1
    return n


def validate_only(source, chunks) -> int:
    """The validator's share: ``RecordChecker.check`` on the same lines (decode and split included)."""
    header = ReadContext.open("bench", "GRCh38", source).header
    n = 0
    for chunk in chunks:
        checker = RecordChecker(header)
        for line_no, raw in iter_chunk_lines(source, chunk):
            checker.check(raw.decode("utf-8").rstrip("\r\n").split("\t"), line_no)
            n += 1
    return n


def read_all(source, chunks) -> tuple[int, int, int]:
    ctx = ReadContext.open("bench", "GRCh38", source)
    records = alleles = quarantined = 0
    for chunk in chunks:
        read = read_chunk(ctx, chunk)
        records += read.records
        alleles += len(read.batch)
        quarantined += len(read.quarantined)
    return records, alleles, quarantined


def through_pool(source, chunks, repeat: int) -> tuple[float, float, int]:
    """Best wall and parent CPU seconds of reading every chunk through one reader process (its
    context kept warm after a first, untimed pass, as a reader keeps it across chunks)."""
    pool = ReadPool(1)
    ctx = ReadContext.open("bench", "GRCh38", source)
    try:
        for chunk in chunks:
            pool.read(ctx, chunk)
        best_wall = best_cpu = float("inf")
        records = 0
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            records = sum(pool.read(ctx, chunk).records for chunk in chunks)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        return best_wall, best_cpu, records
    finally:
        pool.close()


def best_cpu(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunk-size", type=int, default=50_000, help="as settings.ingest.chunk_size")
    parser.add_argument("--repeat", type=int, default=3, help="passes; the best CPU time counts")
    parser.add_argument("--default-gc", action="store_true",
                        help="keep the default collector threshold (reader processes raise it)")
    parser.add_argument("--path", help="benchmark this VCF/BCF instead of the synthetic one")
    parser.add_argument("--pool", action="store_true",
                        help="also read every chunk through a reader process (wall, and this process's CPU)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top 15 of read_chunk")
    args = parser.parse_args()
    if not args.default_gc:
        gc.set_threshold(*GC_THRESHOLD)

    path = Path(args.path) if args.path else synthetic(args.records, args.samples, args.seed)
    source = open_source(str(path))
    chunks = plan_chunks(source, args.chunk_size)
    ref_seconds, lines = best_cpu(lambda: bare_split(source, chunks), args.repeat)
    check_seconds, _ = best_cpu(lambda: validate_only(source, chunks), args.repeat)
    seconds, (records, alleles, quarantined) = best_cpu(lambda: read_all(source, chunks), args.repeat)
    print(f"file: {path.name} ({records:,} records, {alleles:,} alleles, {len(source.samples)} samples, "
          f"{len(chunks)} chunk(s), {quarantined:,} quarantined)")
    print(f"bare decode+split : {ref_seconds:7.3f} s CPU  {lines / ref_seconds:12,.0f} records/s")
    print(f"validation only   : {check_seconds:7.3f} s CPU  {lines / check_seconds:12,.0f} records/s")
    print(f"read_chunk        : {seconds:7.3f} s CPU  {records / seconds:12,.0f} records/s  "
          f"{alleles / seconds:12,.0f} alleles/s")
    print(f"ratio read_chunk/bare split time: {seconds / ref_seconds:.1f}x")
    if args.pool:
        wall, parent_cpu, pooled = through_pool(source, chunks, args.repeat)
        print(f"reader process    : {wall:7.3f} s wall {pooled / wall:12,.0f} records/s  "
              f"parent CPU {parent_cpu:.3f} s ({parent_cpu / pooled * 1e6:.2f} us/record)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(read_all, source, chunks)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
