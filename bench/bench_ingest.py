"""End-to-end ingestion benchmark against bcftools on the same file, in the same run.

Generates (once, cached under bench/out/) a synthetic bgzipped+indexed VCF with ``--records``
records and ``--samples`` samples (3 by default) of ``--shape`` (``bench/synth_vcf.py``: dense,
half the samples carrying each variant, or realistic, a joint-called cohort), then times:
  * ``bcftools view -Ou -o /dev/null FILE``: the htslib reference (parse + BCF encode);
  * ``vcfstream ingest FILE --json`` (fresh dataset, services must be up): the whole pipeline.
Prints records/s and variants/s for both, the ratio, the peak summed PSS of the ingest's process
tree (its reader processes included; PSS shares pages between the processes mapping them, so
the sum does not count a shared page twice), and beside it what PostgreSQL, a separate server,
took: its processes' PSS growth over their level before the run and the database's growth on
disk. A run that fails still prints its time and memory, then how it failed.

``--telemetry`` times a second ingest (fresh dataset) with every exporter on: the Prometheus
endpoint, console-free OTLP export pointed at a closed port; the ratio is the telemetry overhead.
``--cpu`` samples every process's CPU time during the timed ingest and prints it by role (the
flow's process, reader processes, PostgreSQL, Kafka, the Prefect server) beside the machine's
total from /proc/stat: the pipeline is CPU-bound on small machines, so this says where it goes.
It also prints the host's steal time and the kernel's page reclaim meanwhile: on a VM under
memory pressure the same work takes more CPU, and these say when that was so.
``--stages`` runs one more ingest in this process with an in-memory span exporter and prints the
time share of each stage (read, validate, claim, publish, store.<name>) summed over chunks.

``--task-runner dask`` runs the chunk tasks on a local Dask cluster of ``--dask-workers`` TLS worker
processes (``VCFSTREAM_TASK_RUNNER``, ``VCFSTREAM_DASK_LOCAL_WORKERS``), started and stopped within
the timed ingest; the workers are children of the ingest's process, so their memory counts.

``--graph-holding N`` (with ``--fresh-stores``) starts each run's Kuzu from a copy of a graph
already holding N variants (``bench/graph_holding.py``): the cost of writing into a large store.
``--lance-holding N`` does the same for LanceDB (``bench/lance_holding.py``). ``--ledger-holding N``
and ``--catalog-holding N`` first top the home's ledger up to N rows and its catalog up to N
variants (``bench/pg_holding.py``; they stay in the home's PostgreSQL).

``--repeat N`` times N ingests in a row and prints the median (the ``--telemetry`` and
``--stages`` runs come once, after the last): on a shared two-core VM one run can be 30% off
the next.

    .venv/bin/python bench/bench_ingest.py --records 1000000 [--samples 3] [--shape dense|realistic]
        [--stores catalog,lancedb,kuzu] [--fresh-stores] [--repeat N] [--cpu] [--telemetry] [--stages]
        [--task-runner default|dask] [--dask-workers N] [--graph-holding N [--graph-per-table M]]
        [--lance-holding N] [--ledger-holding N] [--catalog-holding N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from graph_holding import copy_of, graph_holding
from lance_holding import lance_holding
from pg_holding import hold_catalog, hold_ledger, home_settings
from synth_vcf import SHAPES, generate


def synthetic(records: int, samples: int = 3, shape: str = "dense") -> Path:
    name = f"synth_{records}" if (samples, shape) == (3, "dense") else f"synth_{records}_{samples}s_{shape}"
    path = REPO / "bench" / "out" / f"{name}.vcf.gz"
    if not path.exists() or not Path(str(path) + ".tbi").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, records, samples, shape=shape)  # type: ignore[arg-type]
    return path


def time_bcftools(path: Path) -> float:
    if shutil.which("bcftools") is None:
        raise SystemExit("bcftools is not installed (Debian package bcftools)")
    started = time.perf_counter()
    subprocess.run(["bcftools", "view", "-Ou", "-o", "/dev/null", str(path)], check=True)
    return time.perf_counter() - started


def _pss(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            total += proc.memory_full_info().pss
    return total


def postgres_processes() -> list[psutil.Process]:
    procs = []
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == "postgres":
                procs.append(proc)
    return procs


class TreeMemory:
    """Samples, twice a second, the summed PSS of a process and its descendants, and now and
    then that of the PostgreSQL server's processes (backends come and go), and keeps the peaks;
    ``flow_peak`` is the ingest's own process alone. Reading PSS makes the kernel walk each
    process's page tables: ``cpu_seconds`` is what the sampling itself cost. A busy PostgreSQL's
    shared buffers made it about 75 ms per sample, and up to 8.6 CPU-s of a run beside a 50M-row
    ledger when read every 2 s: so PostgreSQL is read at most every 2 s and at most
    ``POSTGRES_CPU_SHARE`` of one CPU, by what its last reading cost."""

    POSTGRES_CPU_SHARE = 0.01

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self.flow_peak = 0
        self.postgres_before = _pss(postgres_processes())
        self.postgres_peak = self.postgres_before
        self.at_peak: dict[str, int] = {}  # PSS by kind of process when the tree peaked
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        postgres_next = 0.0
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                flow = _pss([self.root])
                self.flow_peak = max(self.flow_peak, flow)
                by_kind = {"flow": flow}
                for child in self.root.children(recursive=True):
                    kind = _kind(child)
                    by_kind[kind] = by_kind.get(kind, 0) + _pss([child])
                if sum(by_kind.values()) > self.peak:
                    self.peak, self.at_peak = sum(by_kind.values()), by_kind
            if time.monotonic() >= postgres_next:
                spent = time.thread_time()
                self.postgres_peak = max(self.postgres_peak, _pss(postgres_processes()))
                postgres_next = time.monotonic() + max(2.0, (time.thread_time() - spent) / self.POSTGRES_CPU_SHARE)
            self.cpu_seconds = time.thread_time()
            self._stop.wait(0.5)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _kind(proc: psutil.Process) -> str:
    """A child process's kind for the memory breakdown: reader, store writer, or its name."""
    cmdline = " ".join(proc.cmdline())
    if "vcfstream.runtime.readpool" in cmdline:
        return "reader"
    if "vcfstream.stores.writer" in cmdline:
        return f"{proc.cmdline()[-1]} writer"
    return proc.name()


def database_bytes() -> int | None:
    """Size on disk of the PostgreSQL database the ingest writes (ledger, catalog), or None."""
    from vcfstream.ledger import db
    from vcfstream.settings import load_settings

    try:
        with db.connect(load_settings(home=REPO / load_settings().home)) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    except Exception:  # not reachable: the figure is left out
        return None
    return int(row[0]) if row else None


class CpuByRole:
    """CPU seconds (user + system) of every process by role while it runs, sampled twice a second.

    A process that ends between two samples loses its last half second (PostgreSQL backends are
    per connection); ``machine`` (all CPUs, from /proc/stat) has everything, kernel threads too.
    """

    ROLES = ("flow", "reader", "lancedb writer", "kuzu writer", "dask worker", "postgres", "kafka", "prefect server")

    def __init__(self, root: int) -> None:
        self.root = root
        self._start: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._machine = self._busy()
        self._kernel = self._kernel_counters()
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):  # ended, or not ours to read
                self._start[proc.pid] = sum(proc.cpu_times()[:2])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    @staticmethod
    def _kernel_counters() -> dict[str, float]:
        """Steal seconds, and MiB of pages reclaimed by kswapd, by allocating processes themselves
        (direct reclaim), and of file pages read again after reclaim (/proc/vmstat)."""
        counters = {"steal": getattr(psutil.cpu_times(), "steal", 0.0)}
        mib = os.sysconf("SC_PAGE_SIZE") / 2**20
        with contextlib.suppress(OSError):
            for line in Path("/proc/vmstat").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name in ("pgsteal_kswapd", "pgsteal_direct", "workingset_refault_file"):
                    counters[name] = int(value) * mib
        return counters

    def _role(self, proc: psutil.Process) -> str | None:
        if proc.pid == self.root:
            return "flow"
        kind = _kind(proc)
        if kind == "reader" or kind.endswith(" writer"):
            return kind
        name, cmdline = proc.name(), " ".join(proc.cmdline())
        if "multiprocessing.spawn" in cmdline and proc.ppid() == self.root:  # a local cluster's worker process
            return "dask worker"
        if name == "postgres" or cmdline.startswith("postgres"):
            return "postgres"
        if name == "java" and "kafka" in cmdline:
            return "kafka"
        if "prefect" in cmdline and "server" in cmdline:
            return "prefect server"
        return None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def _sample(self) -> None:
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):  # ended, or not ours to read
                role = self._role(proc)
                if role is not None:
                    self._last[proc.pid] = (role, sum(proc.cpu_times()[:2]))

    def stop(self) -> None:
        """Sets ``seconds`` (CPU by role, and ``machine``) and ``kernel`` (``_kernel_counters``
        since the start)."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = dict.fromkeys(self.ROLES, 0.0)
        for pid, (role, cpu) in self._last.items():
            self.seconds[role] = self.seconds.get(role, 0.0) + cpu - self._start.get(pid, 0.0)
        self.seconds["machine"] = self._busy() - self._machine
        self.kernel = {name: value - self._kernel.get(name, 0.0) for name, value in self._kernel_counters().items()}


@dataclass
class Ingest:
    """One timed ``vcfstream ingest``: its JSON summary (None if it printed none), peak PSS of its
    process tree, PostgreSQL's PSS and database growth (bytes), and its error if it failed."""

    seconds: float
    summary: dict | None
    peak: int
    flow_peak: int
    at_peak: dict[str, int]
    postgres_pss: int
    postgres_disk: int | None
    cpu: CpuByRole | None
    error: str | None
    sampler_seconds: float  # CPU the memory sampling took (TreeMemory.cpu_seconds)


def time_ingest(path: Path, stores: str | None, extra_env: dict[str, str], cpu: bool = False) -> Ingest:
    run = uuid.uuid4().hex[:8]
    # A fresh dataset for the ledger and a fresh assembly name for the stores (their keys are
    # dataset-independent): every run writes every variant, as a first ingestion does.
    cmd = [str(REPO / ".venv" / "bin" / "vcfstream"), "ingest", str(path), "--dataset", f"bench-{run}",
           "--assembly", f"bench-{run}", "--json"]
    env = {**os.environ, **extra_env}
    if stores is not None:
        env["VCFSTREAM_STORES"] = stores or "none"
    disk_before = database_bytes()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    memory = TreeMemory(proc.pid)
    roles = CpuByRole(proc.pid) if cpu else None
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    peak = memory.stop()
    if roles is not None:
        roles.stop()
    disk_after = database_bytes()
    try:
        summary = json.loads(out)
    except json.JSONDecodeError:
        summary = None
    error = None
    if proc.returncode != 0:
        errors = (summary or {}).get("errors") or []
        error = f"exit {proc.returncode}: " + (str(errors[0]) if errors else
                                                err.strip().splitlines()[-1] if err.strip() else "no message")
    return Ingest(seconds, summary, peak, memory.flow_peak, memory.at_peak, memory.postgres_peak - memory.postgres_before,
                  None if disk_before is None or disk_after is None else disk_after - disk_before, roles, error,
                  memory.cpu_seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def telemetry_env() -> dict[str, str]:
    """Every exporter on: a Prometheus endpoint and OTLP/gRPC to a port nobody listens on."""
    return {"VCFSTREAM_METRICS_PORT": str(free_port()),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}


def stage_shares(path: Path, stores: str | None, extra_env: dict[str, str]) -> dict[str, float]:
    """Seconds per span name (stages summed over chunks) of an ingest run in this process."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    os.environ.update(extra_env)
    if stores is not None:
        os.environ["VCFSTREAM_STORES"] = stores or "none"
    from vcfstream.cli.run import run_ingest
    from vcfstream.runtime.telemetry import Telemetry, install_telemetry
    from vcfstream.settings import Settings, load_settings

    spans = InMemorySpanExporter()
    install_telemetry(Telemetry.create(Settings(), span_processors=[SimpleSpanProcessor(spans)]))
    settings = load_settings(home=REPO / load_settings().home)
    run = uuid.uuid4().hex[:8]
    settings = settings.with_groups(ingest={"assembly": f"bench-{run}"})  # new keys for the stores too
    summary = run_ingest([str(path)], settings=settings, dataset=f"bench-{run}",
                         stores=[s for s in (stores or "").split(",") if s])
    if summary.state != "Completed":
        raise SystemExit(f"in-process ingest failed: {summary.errors}")
    seconds: dict[str, float] = {}
    for span in spans.get_finished_spans():
        seconds[span.name] = seconds.get(span.name, 0.0) + (span.end_time - span.start_time) / 1e9
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--shape", choices=SHAPES, default="dense",
                        help="synthetic file shape (bench/synth_vcf.py): dense or a realistic joint-called cohort")
    parser.add_argument("--stores", default="", help="comma-separated stores to write ('' = none)")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the ingest run")
    parser.add_argument("--telemetry", action="store_true", help="also time an ingest with every exporter on")
    parser.add_argument("--cpu", action="store_true", help="also print CPU seconds by process role")
    parser.add_argument("--stages", action="store_true", help="also print the time share of each stage")
    parser.add_argument("--graph-holding", type=int, default=0, metavar="N",
                        help="with --fresh-stores: Kuzu starts as a graph holding N variants (bench/graph_holding.py)")
    parser.add_argument("--graph-per-table", type=int, default=None, metavar="M",
                        help="that graph's Variant nodes per table (default: the setting's; N = one table)")
    parser.add_argument("--lance-holding", type=int, default=0, metavar="N",
                        help="with --fresh-stores: LanceDB starts as a table holding N variants (bench/lance_holding.py)")
    parser.add_argument("--ledger-holding", type=int, default=0, metavar="N",
                        help="first top the home's ledger up to N rows (bench/pg_holding.py)")
    parser.add_argument("--catalog-holding", type=int, default=0, metavar="N",
                        help="first top the home's catalog up to N variants (bench/pg_holding.py)")
    parser.add_argument("--fresh-stores", action="store_true",
                        help="LanceDB and Kuzu in a new temporary directory (else the home's, as they have grown)")
    parser.add_argument("--task-runner", choices=("default", "dask"), default="default",
                        help="where chunk tasks run: the flow's threads, or a local Dask cluster started by the run")
    parser.add_argument("--dask-workers", type=int, default=2, help="worker processes of that Dask cluster")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time the ingest this many times in a row (each a new dataset; new stores with "
                             "--fresh-stores) and print each run and the median")
    args = parser.parse_args()
    extra_env = {"VCFSTREAM_TASK_RUNNER": args.task_runner, "VCFSTREAM_DASK_LOCAL_WORKERS": str(args.dask_workers),
                 **dict(item.split("=", 1) for item in args.env)}
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    if (args.graph_holding or args.lance_holding) and not args.fresh_stores:
        parser.error("--graph-holding and --lance-holding need --fresh-stores (each run starts from a copy)")
    held = graph_holding(args.graph_holding, args.graph_per_table) if args.graph_holding else None
    held_lance = lance_holding(args.lance_holding) if args.lance_holding else None
    if args.ledger_holding or args.catalog_holding:
        settings = home_settings()
        if args.ledger_holding:
            print(f"ledger: {hold_ledger(settings, args.ledger_holding):,} rows before the runs")
        if args.catalog_holding:
            print(f"catalog: {hold_catalog(settings, args.catalog_holding):,} held variants before the runs")
    fresh = Path(tempfile.mkdtemp(prefix="bench-stores-", dir=REPO / "bench" / "out")) if args.fresh_stores else None
    rates: list[float] = []
    failed = 0
    try:
        for run in range(1, args.repeat + 1):
            env = dict(extra_env)
            if fresh is not None:
                env.update(VCFSTREAM_LANCEDB_URI=str(fresh / f"{run}" / "lancedb"),
                           VCFSTREAM_KUZU_PATH=str(fresh / f"{run}" / "graph.kuzu"))
                if held is not None:
                    copy_of(held, fresh / f"{run}" / "graph.kuzu")
                if held_lance is not None:
                    shutil.copytree(held_lance, fresh / f"{run}" / "lancedb")
            if args.repeat > 1:
                print(f"-- run {run} of {args.repeat}")
            rate = report(args, env, fresh, extras=run == args.repeat)
            if rate is None:
                failed += 1
            else:
                rates.append(rate)
            if fresh is not None:
                shutil.rmtree(fresh / f"{run}", ignore_errors=True)
        if len(rates) > 1:
            print(f"median of {len(rates)} runs: {statistics.median(rates):,.0f} variants/s "
                  f"(min {min(rates):,.0f}, max {max(rates):,.0f}; each: {', '.join(f'{r:,.0f}' for r in rates)})")
    finally:
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
    if failed:
        raise SystemExit(f"{failed} of {args.repeat} ingests failed")


def report(args: argparse.Namespace, extra_env: dict[str, str], fresh: Path | None, *,
           extras: bool = True) -> float | None:
    """Time one ingest and print its figures (with ``extras``, also the ``--telemetry`` and
    ``--stages`` runs ``args`` ask for); return its variants/s, or None if it failed."""
    path = synthetic(args.records, args.samples, args.shape)
    ref_seconds = time_bcftools(path)
    run = time_ingest(path, args.stores, extra_env, cpu=args.cpu)
    seconds, summary, cpu = run.seconds, run.summary or {}, run.cpu
    variants = summary.get("alleles", 0)
    records = summary.get("records", 0)
    print(f"file: {path.name} ({path.stat().st_size / 2**20:,.0f} MiB; {records:,} records, {variants:,} variant "
          f"alleles, {args.samples:,} samples, {args.shape})")
    print(f"bcftools view -Ou : {ref_seconds:8.2f} s  {records / ref_seconds:12,.0f} records/s")
    runner = "default" if args.task_runner == "default" else f"Dask, {args.dask_workers} local workers"
    print(f"vcfstream ingest  : {seconds:8.2f} s  {variants / seconds:12,.0f} variants/s "
          f"({records / seconds:,.0f} records/s; flow {summary.get('seconds', 0.0):.1f} s; chunk tasks: {runner})")
    print(f"ratio ingest/bcftools time: {seconds / ref_seconds:.1f}x")
    print(f"peak PSS of the ingest process tree: {run.peak / 2**20:,.0f} MiB "
          f"(its own process alone at its peak: {run.flow_peak / 2**20:,.0f} MiB); at the tree's peak: "
          + ", ".join(f"{kind} {pss / 2**20:,.0f}" for kind, pss in sorted(run.at_peak.items())))
    disk = "unknown" if run.postgres_disk is None else f"{run.postgres_disk / 2**20:,.0f} MiB"
    print(f"PostgreSQL meanwhile: PSS +{run.postgres_pss / 2**20:,.0f} MiB at its peak, database +{disk} on disk")
    print(f"published: {summary.get('published')}  stored: {summary.get('stored', {})}")
    if run.error is not None:
        print(f"INGEST FAILED ({summary.get('state', 'no summary')}): {run.error}")
    if cpu is not None:
        roles = ", ".join(f"{role} {value:.1f}" for role, value in cpu.seconds.items()
                          if value and role != "machine")
        print(f"CPU seconds during the ingest: {roles}; this benchmark's memory sampling {run.sampler_seconds:.1f}; "
              f"machine {cpu.seconds['machine']:.1f} "
              f"({psutil.cpu_count()} CPUs x {seconds:.1f} s = {psutil.cpu_count() * seconds:.1f})")
        print(f"meanwhile: steal {cpu.kernel['steal']:.1f} s; reclaimed {cpu.kernel.get('pgsteal_kswapd', 0):,.0f} MiB "
              f"by kswapd and {cpu.kernel.get('pgsteal_direct', 0):,.0f} MiB by allocating processes; "
              f"{cpu.kernel.get('workingset_refault_file', 0):,.0f} MiB of file pages read again after reclaim")
    if fresh is not None:
        print(f"(LanceDB and Kuzu in a new directory, {fresh}; the PostgreSQL catalog is the home's)")
    if args.telemetry and extras:
        on = time_ingest(path, args.stores, {**extra_env, **telemetry_env()})
        on_summary = on.summary or {}
        print(f"with telemetry    : {on.seconds:8.2f} s  {on_summary.get('alleles', 0) / on.seconds:12,.0f} variants/s "
              f"(flow {on_summary.get('seconds', 0.0):.1f} s; peak PSS {on.peak / 2**20:,.0f} MiB)")
        print(f"telemetry on/off time: {on.seconds / seconds:.3f}"
              + (f" (flow {on_summary['seconds'] / summary['seconds']:.3f})" if summary.get("seconds") and on_summary.get("seconds") else ""))
    if args.stages and extras:
        shares = stage_shares(path, args.stores, extra_env)
        chunk_total = shares.get("chunk", 0.0) + sum(v for k, v in shares.items() if k.startswith("store."))
        print("stage seconds (summed over chunks; chunks run in parallel):")
        for name in ("read", "validate", "claim", "publish", "stage",
                     *sorted(k for k in shares if k.startswith("store."))):
            if name in shares:
                print(f"  {name:16s} {shares[name]:8.2f} s  {shares[name] / chunk_total:6.1%}")
    return None if run.error is not None else variants / seconds


if __name__ == "__main__":
    main()
