"""Cost of the telemetry calls a chunk makes, per chunk, with the exporters off and on.

One simulated chunk is what the chunk task does at the default sizes (chunk_size 50,000,
publish_batch_size 10,000): a chunk span; read and validate stages; 5 claim and 5 publish
stages (one per batch, with a platform attribute and breaker/health sources to read); 3 store
stages; ``record_chunk``. Every fifth chunk fails over once. Nothing here is per variant.

    python bench/bench_telemetry.py --chunks 2000
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from vcfstream.model import ChunkSummary
from vcfstream.runtime.telemetry import Telemetry
from vcfstream.settings import Settings

BATCHES = 5
STORES = ("lancedb", "kuzu", "postgres")


class NullSpanExporter(SpanExporter):
    """Takes every span and drops it: the SDK's export path without a network."""

    def export(self, spans: Sequence) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def one_chunk(telemetry: Telemetry, carrier: dict[str, str], index: int) -> None:
    summary = ChunkSummary(records=50_000, alleles=52_000, new=50_000, duplicates=2_000, quarantined=3,
                           published=Counter(iggy=50_000), stored=Counter(lancedb=52_000, kuzu=52_000),
                           rules=Counter({"ref.mismatch": 3}))
    with telemetry.chunk_span(carrier, dataset="bench", file="bench.vcf.gz", chunk=f"bench:{index}", index=index):
        with telemetry.stage("read") as span:
            telemetry.annotate(span, records=50_000, alleles=52_000)
        with telemetry.stage("validate", quarantined=3):
            pass
        for batch in range(BATCHES):
            with telemetry.stage("claim", batch=batch, new=10_000, duplicates=400):
                pass
            with telemetry.stage("publish", batch=batch, messages=10_000) as span:
                if index % 5 == 0 and batch == 0:
                    telemetry.record_failover(span, "iggy", "kafka", "unavailable")
                telemetry.annotate(span, platform="iggy")
        for store in STORES:
            with telemetry.stage(f"store.{store}", rows=52_000):
                pass
        telemetry.record_chunk(summary, {"dataset": "bench"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(name: str, telemetry: Telemetry, chunks: int, repeats: int) -> float:
    telemetry.register_breaker_state_source(lambda: {"iggy": "closed", "kafka": "closed"})
    telemetry.register_health_source(lambda: {"iggy": 1.0, "kafka": 1.0})
    per_chunk = []
    with telemetry.flow_span("bench", flow_run_id="bench-run"):
        carrier = telemetry.inject()
        one_chunk(telemetry, carrier, -1)  # warm up
        for _ in range(repeats):
            started = time.perf_counter()
            for index in range(chunks):
                one_chunk(telemetry, carrier, index)
            per_chunk.append((time.perf_counter() - started) / chunks)
    best = min(per_chunk)
    print(f"{name:<44} {best * 1e6:8.0f} µs/chunk  (median {statistics.median(per_chunk) * 1e6:.0f})")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000, help="chunks per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"{args.chunks} chunks x {args.repeats} repeats; 1 chunk = {BATCHES + 2 + BATCHES + len(STORES)} stage "
          f"spans + chunk span + record_chunk")
    measure("no exporters (the default)", Telemetry.create(Settings()), args.chunks, args.repeats)

    batch = Telemetry.create(Settings(), span_processors=[BatchSpanProcessor(NullSpanExporter())])
    measure("batch span processor (as OTLP, no network)", batch, args.chunks, args.repeats)
    batch.shutdown()

    port = free_port()
    full = Telemetry.create(Settings().with_groups(telemetry={"metrics_port": port}), span_processors=[BatchSpanProcessor(NullSpanExporter())])
    measure("batch span processor + Prometheus endpoint", full, args.chunks, args.repeats)
    scrapes = []
    for _ in range(20):
        started = time.perf_counter()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        scrapes.append(time.perf_counter() - started)
    print(f"{'one scrape of /metrics (' + str(len(body)) + ' bytes)':<44} {min(scrapes) * 1e3:8.1f} ms")
    full.shutdown()


if __name__ == "__main__":
    main()
