"""Record decoders side by side on the same files: speed, peak memory and fidelity.

Speed. On each file (bgzipped and indexed), in the same run, each in a child process of its own
(its peak RSS is its own VmHWM; CPU time from ``os.wait4``):
  * ``bcftools view -Ou -o /dev/null FILE``: the htslib reference (parse + BCF encode);
  * ``vcfstream``: the chunk reader a chunk task runs (``vcfstream.vcf.reader.read_chunk``), over
    every chunk ``plan_chunks`` makes at the default chunk size, single process: validation,
    typing, splitting, keys and message bytes included, as an ingest does;
  * ``cyvcf2`` (htslib): CHROM/POS/REF/ALT/ID/QUAL/FILTER/INFO of every record (INFO as typed
    values) into an Arrow table and the genotype matrix into numpy, per batch of records;
  * ``oxbow`` (noodles): the same fields and GT as Arrow record batches, the genotype matrix
    built from them with Arrow/numpy, per batch.
Prints wall and CPU seconds, records/s (of CPU time: the machine may be shared), the ratio to
bcftools's CPU time and the peak RSS of each. A decoder whose package is absent is skipped with
the reason; ``--extra-path DIR`` appends DIR to ``sys.path`` (e.g. a ``pip install --target DIR
cyvcf2 oxbow``), so the project's own packages keep precedence.

Fidelity (off with ``--no-fidelity``). On every file of ``../shared/data/vcf/real`` and of the
conformance suite (``hts-specs-vcf/{4.1,4.2}/passed``): each decoder's records, split per ALT
as the reader splits them (gVCF placeholders left out, Number=A/R INFO lists cut to the ALT)
and normalized by vcfstream's own ``Normalizer``, against the reader's allele table: record
counts, alleles (contig, POS, REF, ALT, ALT index) present in one and not the other, and on
every allele both have its GT (re-coded per allele as the reader codes it) and its INFO values
(floats to 6 digits, a single value as a list of one). Prints one row per file with each
decoder's verdict, then the first difference of each kind per file.

    .venv/bin/python bench/bench_decoders.py [--extra-path /tmp/decpkgs] [--records 1000000]
        [--realistic-records 20000 --realistic-samples 1000] [--no-speed] [--no-fidelity] [--path FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import synthetic

from vcfstream.vcf.chunks import plan_chunks
from vcfstream.vcf.normalize import Normalizer
from vcfstream.vcf.reader import GVCF_PLACEHOLDERS, HeaderTypes, ReadContext, read_chunk
from vcfstream.vcf.source import open_source

SHARED = REPO.parent / "shared"
REAL = SHARED / "data" / "vcf" / "real"
CONFORMANCE = SHARED / "conformance" / "hts-specs-vcf"
SPEED_REAL = REAL / "NA12878.prod.chr20snippet.g.vcf.gz"
CHUNK_SIZE = 50_000  # settings.ingest.chunk_size's default
BATCH = 50_000  # records per batch for the other decoders
ASSEMBLY = "GRCh38"
DECODERS = ("vcfstream", "cyvcf2", "oxbow")


def _extra_path(argv: list[str]) -> None:
    """``--extra-path DIR`` as early as imports need it (workers get it passed on)."""
    for i, arg in enumerate(argv):
        if arg == "--extra-path" and i + 1 < len(argv):
            sys.path.append(argv[i + 1])


def absent(decoder: str) -> str | None:
    """Why ``decoder`` cannot run here, or None."""
    if decoder == "vcfstream":
        return None
    try:
        __import__(decoder)
    except ImportError as exc:
        return f"not importable ({exc}); pip install --target DIR {decoder} and pass --extra-path DIR"
    return None


# --- decoders: each reads every record of a file and returns how many ---------------------------

def decode_vcfstream(path: str) -> int:
    source = open_source(path)
    ctx = ReadContext.open("bench", ASSEMBLY, source)
    return sum(read_chunk(ctx, chunk).records for chunk in plan_chunks(source, CHUNK_SIZE))


def _cyvcf2_batch(rows: list[tuple[Any, ...]], calls: list[np.ndarray]) -> tuple[pa.Table, np.ndarray]:
    chrom, pos, ref, alt, vid, qual, filt, info = zip(*rows, strict=True)
    table = pa.table({"chrom": chrom, "pos": pa.array(pos, pa.int64()), "ref": ref, "alt": alt, "id": vid,
                      "qual": pa.array(qual, pa.float64()), "filter": filt,
                      "info": [json.dumps(i, default=list) for i in info]})
    ploidy = max(c.shape[1] for c in calls) if calls else 0
    matrix = np.full((len(calls), calls[0].shape[0] if calls else 0, ploidy), -2, np.int16)
    for k, c in enumerate(calls):
        matrix[k, :, : c.shape[1]] = c
    return table, matrix


def cyvcf2_calls(variant: Any, n_samples: int) -> np.ndarray:
    """A cyvcf2 record's (samples, ploidy) allele numbers (-1 missing, -2 no such slot); no
    ploidy slots when the record has no GT (cyvcf2 raises for its genotypes then)."""
    if "GT" not in variant.FORMAT:
        return np.empty((n_samples, 0), np.int16)
    return variant.genotype.array()[:, :-1]


def decode_cyvcf2(path: str) -> int:
    import cyvcf2

    vcf = cyvcf2.VCF(path)
    n_samples = len(vcf.samples)
    records = 0
    rows: list[tuple[Any, ...]] = []
    calls: list[np.ndarray] = []
    for v in vcf:
        rows.append((v.CHROM, v.POS, v.REF, v.ALT, v.ID, v.QUAL, v.FILTER, dict(v.INFO)))
        calls.append(cyvcf2_calls(v, n_samples))
        if len(rows) == BATCH:
            _cyvcf2_batch(rows, calls)
            records += len(rows)
            rows, calls = [], []
    if rows:
        _cyvcf2_batch(rows, calls)
        records += len(rows)
    return records


def _oxbow_source(path: str, samples: bool = True) -> Any:
    import oxbow

    compression = "bgzf" if path.endswith((".gz", ".bgz")) else None
    if path.endswith(".bcf"):
        return oxbow.from_bcf(path, samples="*" if samples else None, genotype_fields=["GT"], genotype_by="field",
                              batch_size=BATCH)
    return oxbow.from_vcf(path, compression, samples="*" if samples else None, genotype_fields=["GT"],
                          genotype_by="field", batch_size=BATCH)


def oxbow_genotypes(batch: pa.RecordBatch, samples: list[str]) -> np.ndarray:
    """The (records, samples, ploidy) allele matrix of an oxbow batch: -1 missing, -2 no such
    slot; no slots where oxbow gives no GT (a call it reads as null, or GT not in the header)."""
    if not samples or "GT" not in batch.schema.names:
        return np.empty((batch.num_rows, len(samples), 0), np.int16)
    gt = batch.column("GT")
    columns = [pc.struct_field(gt, [s, "allele"]) for s in samples]
    ploidy = max((int(pc.max(pc.list_value_length(c)).as_py() or 0) for c in columns), default=0)
    matrix = np.full((batch.num_rows, len(samples), ploidy), -2, np.int16)
    for j, col in enumerate(columns):
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy()
        values = pc.fill_null(pc.list_flatten(col), -1).to_numpy().astype(np.int16)
        rows = np.repeat(np.arange(batch.num_rows), lengths)
        slots = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        matrix[rows, j, slots] = values
    return matrix


def decode_oxbow(path: str) -> int:
    source = _oxbow_source(path)
    records = 0
    for raw in source.batches():
        batch = pa.record_batch(raw)
        oxbow_genotypes(batch, list(source.samples or []))
        records += batch.num_rows
    return records


RUNNERS: dict[str, Callable[[str], int]] = {"vcfstream": decode_vcfstream, "cyvcf2": decode_cyvcf2,
                                            "oxbow": decode_oxbow}


# --- speed: one child process per decoder and file ------------------------------------------------

def peak_rss(pid: int | str = "self") -> int:
    """The peak resident set (bytes) of a process so far: VmHWM, which exec resets (the
    rusage maxrss of a child would count its parent's pages at the fork)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(command: list[str]) -> tuple[float, float, int, dict[str, Any]]:
    """Wall seconds, CPU seconds and peak RSS (bytes) of ``command`` run to its end, and its JSON
    answer if any. A Python worker reports its own peak; another command's is polled."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert child.stdout is not None
    polled = 0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            polled = max(polled, peak_rss(child.pid))
        except (OSError, ValueError):  # ending meanwhile
            pass
        time.sleep(0.02)
    out = child.stdout.read()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    code = child.returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{command[0]} ... exited {code}")
    answer = json.loads(out) if out.strip() else {}
    return wall, usage.ru_utime + usage.ru_stime, int(answer.get("peak_rss", polled)), answer


def speed(path: Path, extra: list[str]) -> None:
    print(f"\n{path.name} ({path.stat().st_size / 2**20:,.1f} MiB)")
    if shutil.which("bcftools") is None:
        print("  bcftools: not installed (Debian package bcftools); no reference")
        ref_cpu = None
    else:
        wall, ref_cpu, rss, _ = run_child(["bcftools", "view", "-Ou", "-o", "/dev/null", str(path)])
    records = 0  # the reference's record count: the first decoder's
    results = []
    for decoder in DECODERS:
        reason = absent(decoder)
        if reason is not None:
            print(f"  {decoder:10s} skipped: {reason}")
            continue
        try:
            d_wall, d_cpu, d_rss, out = run_child([sys.executable, __file__, *extra, "--worker", decoder, str(path)])
        except RuntimeError as exc:
            print(f"  {decoder:10s} failed: {exc}")
            continue
        count = out["records"]
        records = records or count
        results.append((decoder, d_wall, d_cpu, d_rss, count))
    print(f"  {'decoder':14s} {'records':>10s} {'wall s':>8s} {'CPU s':>8s} {'records/s':>11s} {'x bcftools':>10s} "
          f"{'peak RSS':>9s}")
    if ref_cpu is not None and records:
        print(f"  {'bcftools -Ou':14s} {records:10,d} {wall:8.2f} {ref_cpu:8.2f} {records / ref_cpu:11,.0f} "
              f"{1.0:10.1f} {rss / 2**20:6,.0f} MiB")
    for decoder, d_wall, d_cpu, d_rss, count in results:
        ratio = f"{d_cpu / ref_cpu:10.1f}" if ref_cpu else f"{'-':>10s}"
        print(f"  {decoder:14s} {count:10,d} {d_wall:8.2f} {d_cpu:8.2f} {count / d_cpu:11,.0f} {ratio} "
              f"{d_rss / 2**20:6,.0f} MiB")


# --- fidelity --------------------------------------------------------------------------------------

AlleleKey = tuple[str, int, str, str, int]  # contig, pos, ref, alt (normalized), ALT index
Calls = tuple[tuple[int, ...], ...]  # per sample, its alleles re-coded for one ALT
Info = dict[str, Any]
Decoded = tuple[int, dict[AlleleKey, list[Calls]], dict[AlleleKey, list[Info]]]  # records, calls, INFO


def recode(calls: np.ndarray, index: int) -> np.ndarray:
    """A record's allele numbers coded for its ALT ``index`` as the reader codes them: 0 REF,
    1 this ALT, 2 another ALT, -1 missing, -2 no such ploidy slot."""
    coded = np.where(calls == index, 1, np.where(calls > 0, 2, calls))
    return coded.astype(np.int8)


def _trim(row: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """A (samples, ploidy) call row without its trailing no-slot (-2) values."""
    return tuple(tuple(int(a) for a in sample if a != -2) for sample in row)


@dataclass
class ReaderView:
    """A file as vcfstream's reader gives it: record count, quarantined records by rule, and
    {allele: [GT rows]}."""

    records: int
    quarantined: Counter[str]
    alleles: dict[AlleleKey, list[Calls]]
    infos: dict[AlleleKey, list[Info]]


def reader_alleles(path: str) -> ReaderView:
    source = open_source(path)
    ctx = ReadContext.open("bench", ASSEMBLY, source)
    records = 0
    quarantined: Counter[str] = Counter()
    alleles: dict[AlleleKey, list[Calls]] = defaultdict(list)
    infos: dict[AlleleKey, list[Info]] = defaultdict(list)
    for chunk in plan_chunks(source, CHUNK_SIZE):
        read = read_chunk(ctx, chunk)
        records += read.records
        quarantined.update(q.rule for q in read.quarantined)
        t = read.batch.table
        cols = [t.column(n).to_pylist() for n in ("contig", "pos", "ref", "alt", "allele_index")]
        for k, (key, info) in enumerate(zip(zip(*cols, strict=True), t.column("info").to_pylist(), strict=True)):
            alleles[key].append(_trim(read.batch.gt[k]))
            infos[key].append(comparable_info(json.loads(info)))
    return ReaderView(records, quarantined, alleles, infos)


def _comparable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_comparable(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")  # htslib and oxbow hold floats as float32
    return value


def comparable_info(info: Info) -> Info:
    """INFO values as every reader can give them: lists (a single value is a list of one), floats
    to 6 significant digits, absent fields left out."""
    return {key: [_comparable(v)] if not isinstance(v, (tuple, list)) else _comparable(v)
            for key, v in info.items() if v is not None}


def info_numbers(path: str) -> dict[str, str]:
    """Each declared INFO field's Number, as the header gives it."""
    return {key: t.number for key, t in HeaderTypes.from_source(open_source(path)).info.items()}


def allele_info(info: Info, numbers: dict[str, str], index: int) -> Info:
    """A record's INFO with its Number=A/R lists cut to ALT ``index``, as the reader cuts them."""
    cut = {}
    for key, value in info.items():
        number = numbers.get(key)
        if number == "A" and len(value) >= index:
            value = [value[index - 1]]
        elif number == "R" and len(value) > index:
            value = [value[0], value[index]]
        cut[key] = value
    return cut


def _split(normalizer: Normalizer, numbers: dict[str, str], chrom: str, pos: int, ref: str, alts: list[str],
           calls: np.ndarray, info: Info) -> Iterator[tuple[AlleleKey, Calls, Info]]:
    for index, alt in enumerate(alts, 1):
        if alt in GVCF_PLACEHOLDERS:
            continue
        contig, npos, nref, nalt = normalizer.normalize(chrom, pos, ref, alt)
        yield (contig, npos, nref, nalt, index), _trim(recode(calls, index)), allele_info(info, numbers, index)


def cyvcf2_alleles(path: str) -> Decoded:
    import cyvcf2

    normalizer, numbers = Normalizer(ASSEMBLY), info_numbers(path)
    vcf = cyvcf2.VCF(path)
    records = 0
    alleles: dict[AlleleKey, list[Calls]] = defaultdict(list)
    infos: dict[AlleleKey, list[Info]] = defaultdict(list)
    for v in vcf:
        records += 1
        info = comparable_info(dict(v.INFO))
        calls = cyvcf2_calls(v, len(vcf.samples))
        for key, gt, cut in _split(normalizer, numbers, v.CHROM, v.POS, v.REF, v.ALT, calls, info):
            alleles[key].append(gt)
            infos[key].append(cut)
    return records, alleles, infos


def oxbow_alleles(path: str) -> Decoded:
    normalizer, numbers = Normalizer(ASSEMBLY), info_numbers(path)
    source = _oxbow_source(path)
    samples = list(source.samples or [])
    records = 0
    alleles: dict[AlleleKey, list[Calls]] = defaultdict(list)
    infos: dict[AlleleKey, list[Info]] = defaultdict(list)
    for raw in source.batches():
        batch = pa.record_batch(raw)
        matrix = oxbow_genotypes(batch, samples)
        cols = [batch.column(n).to_pylist() for n in ("chrom", "pos", "ref", "alt")]
        record_infos = batch.column("info").to_pylist() if "info" in batch.schema.names else [None] * batch.num_rows
        for k, (chrom, pos, ref, alts) in enumerate(zip(*cols, strict=True)):
            records += 1
            info = comparable_info(record_infos[k] or {})
            for key, gt, cut in _split(normalizer, numbers, chrom, pos, ref, alts or [], matrix[k], info):
                alleles[key].append(gt)
                infos[key].append(cut)
    return records, alleles, infos


FIDELITY: dict[str, Callable[[str], Decoded]] = {
    "cyvcf2": cyvcf2_alleles, "oxbow": oxbow_alleles}


def fidelity_files() -> list[Path]:
    real = sorted(p for p in REAL.iterdir() if p.name.endswith((".vcf.gz", ".vcf.bgz", ".bcf")))
    suite = sorted(p for v in ("4.1", "4.2") for p in (CONFORMANCE / v / "passed").glob("*.vcf"))
    return real + suite


def _declares_gt(path: Path) -> bool:
    return any(line.startswith("##FORMAT=<ID=GT,") for line in open_source(str(path)).header_lines)


def compare(path: Path, reader: ReaderView, decoder: str) -> tuple[str, list[str]]:
    """A short verdict for ``decoder`` on ``path`` ("same" when every allele and GT agrees) and
    its first differences."""
    try:
        records, theirs, their_infos = FIDELITY[decoder](str(path))
    except Exception as exc:  # a decoder that cannot read a file is a finding, not a stop
        return f"error: {str(exc)[:40]}", []
    ours = reader.alleles
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    gt_diff = [k for k in ours if k in theirs and ours[k] != theirs[k]]
    info_diff = [k for k in ours if k in theirs and reader.infos[k] != their_infos[k]]
    verdict = ", ".join(part for part in (
        f"records {records}" if records != reader.records else "",
        f"-{len(missing)} alleles" if missing else "", f"+{len(extra)} alleles" if extra else "",
        f"GT {len(gt_diff)}" if gt_diff else "", f"INFO {len(info_diff)}" if info_diff else "") if part) or "same"
    notes = [f"{decoder} lacks {k}" for k in missing[:1]] + [f"{decoder} adds {k}" for k in extra[:1]]
    if gt_diff:
        k = gt_diff[0]
        unread = all(not sample for sample in theirs[k][0])
        why = " (it read no GT: GT is not declared in the header)" if unread and not _declares_gt(path) else ""
        notes.append(f"GT at {k}: reader {ours[k][0][:4]} {decoder} {theirs[k][0][:4]}{why}")
    if info_diff:
        k = info_diff[0]
        mine, other = reader.infos[k][0], their_infos[k][0]
        fields = sorted(f for f in mine.keys() | other.keys() if mine.get(f) != other.get(f))[:3]
        notes.append(f"INFO at {k}: " + "; ".join(f"{f} reader {mine.get(f)!r} {decoder} {other.get(f)!r}"
                                                  for f in fields))
    return verdict, notes


def fidelity(decoders: list[str]) -> None:
    if not decoders:
        print("fidelity: no decoder to compare with the reader")
        return
    print("\nfidelity against vcfstream's reader: alleles by normalized (contig, POS, REF, ALT, ALT index),")
    print("GT re-coded per allele; 'same' = every allele, GT and INFO agrees; +N: alleles the reader does not")
    print("publish (its quarantined records), -N: alleles the decoder lacks, GT/INFO N: alleles whose calls/INFO differ")
    print(f"  {'file':52s} {'records':>8s} {'alleles':>8s} {'quar.':>6s}  " + "".join(f"{d:24s}" for d in decoders))
    notes: list[str] = []
    same: Counter[str] = Counter()
    files = fidelity_files()
    for path in files:
        name = str(path.relative_to(SHARED)).replace("conformance/hts-specs-vcf/", "conformance/")
        try:
            reader = reader_alleles(str(path))
        except Exception as exc:  # the reader refusing a file is reported, not fatal
            print(f"  {name:52s} reader refused it: {type(exc).__name__}: {str(exc)[:100]}")
            continue
        verdicts = []
        for decoder in decoders:
            verdict, found = compare(path, reader, decoder)
            same[decoder] += verdict == "same"
            verdicts.append(verdict)
            notes += [f"{name}: {note}" for note in found]
        alleles = sum(len(v) for v in reader.alleles.values())
        print(f"  {name:52s} {reader.records:8,d} {alleles:8,d} {sum(reader.quarantined.values()):6,d}  "
              + "".join(f"{v:24s}" for v in verdicts))
        if reader.quarantined and any(v != "same" for v in verdicts):
            notes.append(f"{name}: the reader quarantined " + ", ".join(
                f"{n} x {rule}" for rule, n in reader.quarantined.most_common(3)))
    print("  files where a decoder gives what the reader gives: "
          + ", ".join(f"{d} {same[d]}/{len(files)}" for d in decoders))
    if notes:
        print("first differences:")
        for note in notes:
            print(f"  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra-path", help="a folder of extra packages (cyvcf2, oxbow) appended to sys.path")
    parser.add_argument("--records", type=int, default=1_000_000, help="records of the dense 3-sample file")
    parser.add_argument("--realistic-records", type=int, default=20_000)
    parser.add_argument("--realistic-samples", type=int, default=1_000)
    parser.add_argument("--path", action="append", default=[], help="time this file instead (repeatable)")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-fidelity", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("DECODER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        decoder, path = args.worker
        records = RUNNERS[decoder](path)
        print(json.dumps({"records": records, "peak_rss": peak_rss()}))
        return
    extra = ["--extra-path", args.extra_path] if args.extra_path else []
    if not args.no_speed:
        paths = [Path(p) for p in args.path] or [
            synthetic(args.records),
            synthetic(args.realistic_records, args.realistic_samples, "realistic"),
            SPEED_REAL]
        print("speed: each decoder in its own process; records/s and the ratio are of CPU time")
        for path in paths:
            speed(path, extra)
    if not args.no_fidelity:
        available = [d for d in FIDELITY if absent(d) is None]
        for d in FIDELITY:
            if d not in available:
                print(f"fidelity: {d} skipped: {absent(d)}")
        fidelity(available)


_extra_path(sys.argv)

if __name__ == "__main__":
    main()
