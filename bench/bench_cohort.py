"""Many small files: a cohort of single-sample files against the same records in one file.

Generates (once, cached under bench/out/) ``--files`` single-sample bgzipped+indexed VCFs of
``--records`` records each (``bench/synth_vcf.py``, dense shape, one seed per file) and one
single-sample file of ``--files x --records`` records, then times, each as a fresh dataset:
  * ``vcfstream ingest ONE --json``: the same number of records in one file;
  * the ``ingest_cohort`` flow over the folder (subflow dispatch, in a process of its own,
    against the Prefect server when one answers, as the CLI does); ``--files-per-run 1`` runs
    ``ingest_vcf`` once per file, as cohorts did before small files shared runs.
Prints both times, their ratio, the per-file overhead ((cohort - one file) / files) and the peak
summed PSS of each process tree (``bench_ingest.TreeMemory``). Services must be up.

    .venv/bin/python bench/bench_cohort.py --files 40 --records 20000 [--stores catalog,lancedb,kuzu]
        [--max-concurrent 2] [--files-per-run 100] [--skip-one-file] [--fresh-stores]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import TreeMemory
from synth_vcf import generate


def cohort_folder(files: int, records: int) -> Path:
    """``files`` single-sample files of ``records`` records, each of its own seed (other variants)."""
    folder = REPO / "bench" / "out" / f"cohort_{files}x{records}"
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        path = folder / f"sample{number + 1:04d}.vcf.gz"
        if not path.exists() or not Path(f"{path}.tbi").exists():
            generate(path, records, 1, seed=1000 + number, contigs=1)
    return folder


def one_file(records: int) -> Path:
    path = REPO / "bench" / "out" / f"synth_{records}_1s_dense.vcf.gz"
    if not path.exists() or not Path(f"{path}.tbi").exists():
        generate(path, records, 1)
    return path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, dict, str]:
    """Seconds, peak PSS of the process tree, the JSON it printed, and its stderr's last line."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    memory = TreeMemory(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    peak = memory.stop()
    try:
        data = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except json.JSONDecodeError:
        data = {}
    last = err.strip().splitlines()[-1] if proc.returncode and err.strip() else ""
    return seconds, peak, data, last


def run_cohort(folder: str, dataset: str, max_concurrent: int, stores: list[str], files_per_run: int) -> None:
    """The cohort flow over ``folder`` in this process; prints its summary as one JSON line."""
    from vcfstream.cli.run import configure_prefect
    from vcfstream.settings import load_settings

    settings = load_settings()
    configure_prefect(settings)
    from flows.cohort import ingest_cohort
    from vcfstream.cohort import CohortFailed
    from vcfstream.runtime.process import process_runtime

    try:
        state: Any = ingest_cohort(directory=folder, dataset=dataset, assembly=dataset, dispatch="subflow",
                                   max_concurrent=max_concurrent, stores=stores, files_per_run=files_per_run,
                                   return_state=True)
        data = state.result(raise_on_failure=False)
    finally:
        process_runtime().close()
    print(json.dumps(data.summary if isinstance(data, CohortFailed) else data, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--stores", default="catalog,lancedb,kuzu", help="comma-separated stores to write")
    parser.add_argument("--max-concurrent", type=int, default=2, help="the cohort flow's max_concurrent")
    parser.add_argument("--files-per-run", type=int, default=100,
                        help="the cohort flow's files_per_run (1: a run of ingest_vcf per file)")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for both runs")
    parser.add_argument("--skip-one-file", action="store_true", help="time the cohort only")
    parser.add_argument("--fresh-stores", action="store_true",
                        help="LanceDB and Kuzu in a new directory for each of the two runs (else the home's, as the "
                             "first run leaves them for the second)")
    parser.add_argument("--run-cohort", nargs=2, metavar=("FOLDER", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not [s for s in args.stores.split(",") if s]:
        parser.error("--stores names at least one store (an empty VCFSTREAM_STORES means the default, all)")
    if args.run_cohort:
        cohort_dir, dataset = args.run_cohort
        run_cohort(cohort_dir, dataset, args.max_concurrent, [s for s in args.stores.split(",") if s],
                   args.files_per_run)
        return
    folder = cohort_folder(args.files, args.records)
    single = one_file(args.files * args.records)
    env = {**os.environ, "VCFSTREAM_STORES": args.stores,
           "VCFSTREAM_INPUT_ROOTS": f"{folder}:{single.parent}", **dict(item.split("=", 1) for item in args.env)}
    print(f"{args.files} single-sample files x {args.records:,} records (stores: {args.stores}; files_per_run {args.files_per_run}); "
          f"one file: {single.name}")
    fresh = Path(tempfile.mkdtemp(prefix="bench-stores-", dir=REPO / "bench" / "out")) if args.fresh_stores else None

    def stores_of(run: str) -> dict[str, str]:
        if fresh is None:
            return env
        return {**env, "VCFSTREAM_LANCEDB_URI": str(fresh / run / "lancedb"),
                "VCFSTREAM_KUZU_PATH": str(fresh / run / "graph.kuzu")}

    one_seconds = None
    if not args.skip_one_file:
        run = f"bench-{uuid.uuid4().hex[:8]}"
        one_seconds, one_peak, one, error = timed(
            [str(REPO / ".venv" / "bin" / "vcfstream"), "ingest", str(single), "--dataset", run, "--assembly", run,
             "--json"], stores_of(run))
        print(f"one file : {one_seconds:8.2f} s  {one.get('records', 0):,} records, {one.get('alleles', 0):,} "
              f"alleles; peak PSS {one_peak / 2**20:,.0f} MiB {error}")
    run = f"bench-{uuid.uuid4().hex[:8]}"
    seconds, peak, cohort, error = timed([sys.executable, __file__, "--max-concurrent", str(args.max_concurrent),
                                          "--stores", args.stores, "--files-per-run", str(args.files_per_run),
                                          "--run-cohort", str(folder), run], stores_of(run))
    print(f"cohort   : {seconds:8.2f} s  {cohort.get('records', 0):,} records, {cohort.get('variants', 0):,} "
          f"alleles, {cohort.get('ingested_files', 0)} of {cohort.get('files', 0)} files ingested "
          f"({cohort.get('failed_files', 0)} failed); peak PSS {peak / 2**20:,.0f} MiB {error}")
    if fresh is not None:
        print(f"(LanceDB and Kuzu of each run in a new directory under {fresh}; the PostgreSQL catalog is the home's)")
    if one_seconds:
        print(f"ratio cohort/one file: {seconds / one_seconds:.2f}x; per-file overhead "
              f"{(seconds - one_seconds) / args.files:.3f} s")


if __name__ == "__main__":
    main()
