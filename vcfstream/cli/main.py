"""The ``vcfstream`` command: a thin argparse layer over the Python API.

Each subcommand parses flags into ``Settings`` overrides and calls one function; heavy imports
(Prefect, pysam, stores) happen inside the subcommand so ``vcfstream --help`` stays fast.
Exit codes: 0 success, 1 the work failed (reason on one line), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vcfstream.errors import VcfstreamError
from vcfstream.names import RULE_TEXT, InvalidName, check_dataset
from vcfstream.runtime.malloc import limit_malloc_arenas
from vcfstream.settings import Settings, load_settings
from vcfstream.vcf.confinement import input_policy, owner_run


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, sort_keys=False) + "\n")


def cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.devservices import services

    if args.action == "credentials":
        return _print_credentials(args, settings)
    if args.action == "up":
        report = services.up(settings, worker=True)  # + deployments and a process worker
    elif args.action == "down":
        report = services.down(settings)
    else:
        from vcfstream.devservices.workers import worker_status

        report = {**services.status(settings), **worker_status(settings)}
    if args.json:
        _print_json(report)
    else:
        for name, info in report.items():
            print(f"{name:10} {info.get('state', '?'):9} {info.get('address', '')}")
    return 0 if args.action == "down" or all(i.get("state") == "running" for i in report.values()) else 1


def _print_credentials(args: argparse.Namespace, settings: Settings) -> int:
    """The local services' generated logins, on request only (e.g. the Prefect UI's)."""
    from vcfstream.devservices.credentials import KAFKA_MECHANISM, KAFKA_PROTOCOL, read_credentials
    from vcfstream.devservices.services import PG_DATABASE

    credentials = read_credentials(settings)
    if credentials is None:
        print(f"vcfstream services: no credentials under {settings.home_dir}; `vcfstream services up` "
              "generates them", file=sys.stderr)
        return 1
    pg_address, kafka_address = f"127.0.0.1:{settings.services.pg_port}", f"127.0.0.1:{settings.services.kafka_port}"
    pg_dsn = f"postgresql://{credentials.pg_user}:{credentials.pg_password}@{pg_address}/{PG_DATABASE}"
    prefect_address = f"http://127.0.0.1:{settings.services.prefect_port}"
    report: dict[str, dict[str, Any]] = {
        "postgres": {"address": pg_address, "database": PG_DATABASE,
                     "dsn": pg_dsn,
                     "superuser": credentials.pg_superuser, "superuser_password": credentials.pg_superuser_password},
        "kafka": {"address": kafka_address, "security_protocol": KAFKA_PROTOCOL, "sasl_mechanism": KAFKA_MECHANISM,
                  "users": {credentials.kafka_user: credentials.kafka_password,
                            credentials.kafka_reader_user: credentials.kafka_reader_password,
                            credentials.kafka_admin_user: credentials.kafka_admin_password}},
        "prefect": {"address": prefect_address,
                    "auth_string": credentials.prefect_auth_string},
    }
    if args.json:
        _print_json(report)
        return 0
    print(f"postgres  {pg_dsn}")
    print(f"          superuser {credentials.pg_superuser} password {credentials.pg_superuser_password}")
    print(f"kafka     {kafka_address} {KAFKA_PROTOCOL} {KAFKA_MECHANISM}")
    print(f"          {credentials.kafka_user} (writes its topics) password {credentials.kafka_password}")
    print(f"          {credentials.kafka_reader_user} (reads them) password {credentials.kafka_reader_password}")
    print(f"          {credentials.kafka_admin_user} (the broker, super user) password {credentials.kafka_admin_password}")
    print(f"prefect   {prefect_address}  UI password (the whole string): {credentials.prefect_auth_string}")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.cli.run import run_ingest

    summary = run_ingest(
        [str(p) for p in args.paths],
        settings=settings,
        dataset=args.dataset,
        strict=args.strict,
        reference=args.reference,
        show_progress=not args.json and sys.stderr.isatty(),
    )
    if args.json:
        _print_json(summary.to_json())
    if summary.state != "Completed":
        reason = "; ".join(summary.errors or ["the flow run failed"])
        print(f"vcfstream ingest: {reason}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"{summary.headline()} ({summary.seconds:.1f} s, flow run {summary.flow_run_id})")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 1 on missing ids or unexplained duplicates (after the repair, with ``--repair``)."""
    from vcfstream.verify import repair_dataset, verify_dataset

    if args.repair:
        outcome = repair_dataset(settings, args.dataset, include_expired=args.include_expired,
                                 reference=args.reference)
        report = outcome["after"]
        if args.json:
            _print_json(outcome)
        else:
            print(f"repaired {outcome['repaired']:,} of {outcome['before']['missing']:,} missing"
                  + (f" and {outcome['before']['expired']:,} expired" if args.include_expired else "") + " ids")
            for source in outcome["sources"]:
                if source["problem"]:
                    print(f"  {source['path'] or source['digest']}: {source['problem']}")
            print(", ".join(f"{k}={v}" for k, v in report.items() if not isinstance(v, dict)))
        problems = any(source["problem"] for source in outcome["sources"])
        return 0 if report["missing"] == 0 and report["duplicates"] == 0 and not problems else 1
    report = verify_dataset(settings, args.dataset)
    if args.json:
        _print_json(report)
    else:
        print(", ".join(f"{k}={v}" for k, v in report.items() if not isinstance(v, dict)))
    return 0 if report["missing"] == 0 and report["duplicates"] == 0 else 1


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.vcf.validation.files import validate_paths

    reference = input_policy(settings).check_reference(args.reference) if args.reference else None  # no URL
    report = validate_paths([str(p) for p in args.paths], reference=reference)
    if args.json:
        _print_json(report)
    else:
        for entry in report["files"]:
            status = "ok" if entry["ok"] else "INVALID"
            rules = f" [{', '.join(entry['rules'])}]" if entry.get("rules") else ""
            print(f"{status:8} {entry['path']}  record errors: {entry['record_errors']}{rules}")
            for err in entry["file_errors"]:
                where = f"line {err['line']}" if err.get("line") is not None else "file"  # e.g. a BCF header
                print(f"         {where}: [{err['rule']}] {err['message']}")
    return 0 if all(entry["ok"] for entry in report["files"]) else 1


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.ledger.quarantine import list_quarantined

    rows = list_quarantined(settings, args.dataset, limit=args.limit)
    if args.json:
        _print_json({"dataset": args.dataset, "records": rows})
    else:
        for row in rows:
            where = f":{row['line']}" if row.get("line") is not None else ""  # BCF records have no line number
            print(f"{row['path']}{where}: [{row['rule']}] {row['message']}")
    return 0


def cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    """``drop`` without ``--yes`` only says what would go."""
    from vcfstream.ledger.retention import drop_ledger, ledger_footprint

    if args.yes:
        footprint = drop_ledger(settings, args.dataset, args.source)
    else:
        footprint = ledger_footprint(settings, args.dataset, args.source)
    if args.json:
        _print_json(footprint.to_json())
        return 0
    what = f"dataset {args.dataset}" + (f", file {args.source}" if args.source else "")
    rows = ", ".join(f"{n:,} {state}" for state, n in footprint.ledger_rows.items()) or "none"
    print(f"{what}: ledger rows: {rows}; chunk records: {footprint.chunks:,}; dead letters: {footprint.dead_letters:,}; "
          f"newest publish: {footprint.newest_published_at or 'none'}")
    if footprint.dropped:
        print("dropped. A later ingest of these files publishes them again (docs/operations.md, Ledger retention)")
    else:
        print("nothing dropped: add --yes to drop these rows (docs/operations.md, Ledger retention)")
    return 0


def cmd_similar(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.stores.lance import similar_variants

    rows = similar_variants(settings, args.variant_key, k=args.k)
    _emit_rows(args, rows)
    return 0


def cmd_carriers(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.stores.catalog import carriers

    _emit_rows(args, carriers(settings, args.variant_key, dataset=args.dataset))
    return 0


def cmd_shared(args: argparse.Namespace, settings: Settings) -> int:
    from vcfstream.stores.catalog import shared_variants

    _emit_rows(args, shared_variants(settings, args.sample_a, args.sample_b, dataset=args.dataset))
    return 0


def cmd_blocks(args: argparse.Namespace, settings: Settings) -> int:
    from blocks.register import register_blocks

    names = register_blocks(settings)
    print("\n".join(names))
    return 0


def _emit_rows(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print("  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcfstream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("services", cmd_services, "start, stop or show PostgreSQL, Kafka and the Prefect server, "
                                      "or print their generated credentials")
    p.add_argument("action", choices=["up", "down", "status", "credentials"])
    p.add_argument("--json", action="store_true")

    p = add("ingest", cmd_ingest, "ingest VCF/BCF files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--dataset", default="default", type=_dataset_name, help=f"the dataset: {RULE_TEXT}")
    p.add_argument("--assembly", default=None)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--strict", action="store_true", help="any record error rejects the file")
    p.add_argument("--reference", default=None, help="faidx-indexed FASTA: left-align and check REF")
    p.add_argument("--routing", default=None, choices=["primary_only", "fallback_only", "health", "round_robin"])
    p.add_argument("--trace-console", action="store_true")
    p.add_argument("--json", action="store_true")

    p = add("verify", cmd_verify, "reconcile broker contents with the ledger (docs/operations.md, Repair)")
    p.add_argument("--dataset", required=True, type=_dataset_name)
    p.add_argument("--json", action="store_true")
    p.add_argument("--repair", action="store_true", help="republish missing ids from their source files, then verify")
    p.add_argument("--include-expired", action="store_true",
                   help="with --repair: republish ids the platform's retention removed, too")
    p.add_argument("--reference", default=None, help="with --repair: the FASTA the files were ingested with")

    p = add("validate", cmd_validate, "validate files without claiming, publishing or storing")
    p.add_argument("paths", nargs="+")
    p.add_argument("--reference", default=None)
    p.add_argument("--json", action="store_true")

    p = add("quarantine", cmd_quarantine, "list dead-lettered records")
    p.add_argument("--dataset", required=True)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true")

    p = add("ledger", cmd_ledger, "drop a dataset's ledger rows, chunk records and dead letters "
                                  "(docs/operations.md, Ledger retention)")
    p.add_argument("action", choices=["drop"])
    p.add_argument("--dataset", required=True, type=_dataset_name)
    p.add_argument("--source", default=None, type=_sha256, metavar="SHA256",
                   help="only this file's rows (its content digest, as `ingest --json` prints it)")
    p.add_argument("--yes", action="store_true", help="drop them (else only count them)")
    p.add_argument("--json", action="store_true")

    p = add("similar", cmd_similar, "nearest variants by feature vector (LanceDB)")
    p.add_argument("variant_key")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true")

    p = add("carriers", cmd_carriers, "samples carrying a variant (catalog)")
    p.add_argument("variant_key")
    p.add_argument("--dataset", default=None)
    p.add_argument("--json", action="store_true")

    p = add("shared", cmd_shared, "variants two samples both carry (catalog)")
    p.add_argument("sample_a")
    p.add_argument("sample_b")
    p.add_argument("--dataset", default=None)
    p.add_argument("--json", action="store_true")

    p = add("blocks", cmd_blocks, "register Prefect blocks with defaults matching services up")
    p.add_argument("action", choices=["register"])
    return parser


def _dataset_name(value: str) -> str:
    """``--dataset``, checked at the door (``vcfstream.names``): a usage error names the rule."""
    try:
        return check_dataset(value)
    except InvalidName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sha256(value: str) -> str:
    """A file's content digest: 64 hex digits (``sha256sum`` prints it), lower-cased."""
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"{value!r} is not a sha256 digest (64 hex digits)")
    return digest


def settings_from_args(args: argparse.Namespace) -> Settings:
    """CLI flags over the environment: flags -> settings -> the code (the flow's parameters and the
    process's telemetry, which ``run_ingest`` sets up from these settings)."""
    return load_settings(
        ingest={"assembly": getattr(args, "assembly", None), "chunk_size": getattr(args, "chunk_size", None)},
        routing={"strategy": getattr(args, "routing", None)},
        telemetry={"trace_console": getattr(args, "trace_console", None) or None},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_malloc_arenas()  # before Prefect's threads and the chunk threads start
    os.umask(0o077)  # what the CLI creates (stores, results, the home) is its user's only
    try:
        settings = settings_from_args(args)
        with owner_run():  # the user's own command: any local file they can read (vcfstream.vcf.confinement)
            return args.handler(args, settings)
    except VcfstreamError as exc:
        print(f"vcfstream {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vcfstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
