"""The Prefect UI in headless Chromium, against the real server, a real process worker and the
real services: start a run, watch it fail on a bad Kafka block, fix the block, retry it from the
UI, and read the nightly schedule. Screenshots of every step go to test-artifacts/ui/.

The tests run in file order and share one dataset: the failing run re-ingests the file the first
run ingested (its chunk completes with nothing new to publish) plus a new file (whose chunks fail
on the dead broker), so the retry shows the completed chunk as Cached.
"""

from __future__ import annotations

import contextvars
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from paths import REAL, REPO

from vcfstream.names import artifact_key
from vcfstream.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST_FILE = REAL / "chr22.vcf.gz"  # copied to the inbox by the scenario
NEW_FILE = REAL / "chr_m_indels.vcf.gz"
SHOTS = REPO / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = 300


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(services: Settings) -> Iterator[Settings]:
    """Blocks, work pool and deployments applied; a process worker polling the pool."""
    from blocks.register import prefect_api
    from flows.deploy import deploy
    from vcfstream.devservices.workers import start_worker, stop_worker

    with prefect_api(services):
        deploy(services)
        worker = start_worker(services)
        yield services
        if worker["started"]:  # one that `services up` started stays up
            stop_worker(services, worker["name"])


@pytest.fixture(scope="module")
def page(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A page of Debian's Chromium with a fresh profile."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
        auth = stack.services.prefect_auth_string
        if auth is not None:  # the server's basic auth, where the UI's login page keeps it
            context.add_init_script(f"localStorage.setItem('prefect-password', btoa({json.dumps(auth.get_secret_value())}))")
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()


@pytest.fixture(scope="module")
def scenario(stack: Settings) -> Iterator[dict[str, Any]]:
    """Names shared by the steps: one dataset, one pair of throw-away blocks (deleted at the end),
    one secret."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from blocks import KafkaConnection, RoutingPolicy

    tag = uuid.uuid4().hex[:10]
    names = {"kafka_block": f"test-kafka-{tag}", "routing_block": f"test-routing-{tag}"}  # saved block names
    # A run started in the UI reads only the worker's input roots: the files go to the inbox.
    inbox = stack.home_dir / "incoming" / f"ui-{tag}"
    inbox.mkdir(parents=True)
    files = [Path(shutil.copy(source, inbox / source.name)) for source in (FIRST_FILE, NEW_FILE)]
    yield {"dataset": f"ui_{tag}", **names, "secret": f"do-not-show-{tag}", "files": files,
           "ui": f"http://127.0.0.1:{stack.services.prefect_port}"}
    shutil.rmtree(inbox)
    with get_client(sync_client=True) as client:
        for cls, name in ((KafkaConnection, names["kafka_block"]), (RoutingPolicy, names["routing_block"])):
            try:
                client.delete_block_document(
                    client.read_block_document_by_name(name, cls.get_block_type_slug()).id)
            except ObjectNotFound:
                pass


# -- UI helpers -------------------------------------------------------------------------------


def shot(page: Any, name: str, *, full_page: bool = False) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def open_deployment(page: Any, ui: str, deployment: str) -> None:
    """From the UI's front page: Deployments in the side bar, then the deployment."""
    page.goto(ui + "/")
    page.get_by_role("link", name="Deployments", exact=True).first.click()
    page.get_by_role("link", name=deployment, exact=True).first.click()
    page.get_by_role("tab", name="Upcoming", exact=True).wait_for()  # the deployment page, not the list
    page.wait_for_load_state("networkidle")


def parameter(page: Any, name: str) -> Any:
    """The custom-run form section of one flow parameter (label, type tabs, input); ``page`` may
    also be a section, for the fields of an object parameter."""
    label = page.locator("label", has_text=re.compile(rf"^{re.escape(name)}( \(Optional\))?$", re.IGNORECASE))
    return label.locator("xpath=ancestor::div[3]")


def start_custom_run(page: Any, ui: str, *, paths: list[Path], fields: dict[str, str], chunk_size: int | None,
                     screenshot: str) -> None:
    """Deployment ingest-vcf > Run > Custom run, fill the form, Submit."""
    open_deployment(page, ui, "ingest-vcf")
    page.get_by_role("button", name="Run", exact=True).first.click()
    page.get_by_role("menuitem", name="Custom run").click()
    section = parameter(page, "paths")
    for path in paths:
        section.get_by_role("button", name="Add item").click()
        section.locator("textarea").last.fill(str(path))
    for name, value in fields.items():  # "blocks.kafka": the field kafka inside parameter blocks
        *outer, leaf = name.split(".")
        scope = page
        for part in outer:
            scope = parameter(scope, part)
        parameter(scope, leaf).locator("textarea").fill(value)
    if chunk_size is not None:
        section = parameter(page, "chunk_size")
        section.get_by_role("tab", name="int").click()
        section.locator("input").fill(str(chunk_size))
    page.wait_for_load_state("networkidle")  # the form's validation requests are answered
    shot(page, screenshot, full_page=True)
    form_url = page.url
    submitted = submit(page)
    assert submitted.ok, f"creating the run failed: HTTP {submitted.status} {submitted.text()[:500]}"
    # A created run takes the UI from the form to the deployment's runs (or the run's page).
    page.wait_for_url(lambda url: url != form_url, timeout=60_000)


def submit(page: Any, attempts: int = 3) -> Any:
    """Click the form's Submit until the UI sends its create-run request (a click while the page
    was still settling sent nothing: CI once waited 60 s for a run never created); the response.
    Clicked again only when no request went out, so a run is never created twice."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        try:
            with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/create_flow_run"),
                                     timeout=15_000) as sent:
                page.get_by_role("button", name="Submit").click()
            break
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.wait_for_load_state("networkidle")
    return sent.value.response()


def flow_run_of(dataset: str, paths: list[Path], since: float) -> Any:
    """The flow run of ingest-vcf with these parameters created after ``since`` (epoch seconds)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    wanted = [str(p) for p in paths]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["ingest-vcf"])),
                flow_run_filter=FlowRunFilter(), sort=FlowRunSort.START_TIME_DESC, limit=50)
        for run in runs:
            if (run.parameters.get("dataset") == dataset and run.parameters.get("paths") == wanted
                    and run.created is not None and run.created.timestamp() >= since - 5):
                return run
        time.sleep(1)
    raise AssertionError(f"no flow run of ingest-vcf for {dataset} {wanted} appeared")


def open_run(page: Any, ui: str, run: Any) -> None:
    """From the deployment's Runs list, open the run by its name (once the flow has named it
    "<dataset>: <paths>": until it starts, a run carries a random name)."""
    from prefect.client.orchestration import get_client

    dataset = run.parameters["dataset"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not run.name.startswith(f"{dataset}: "):
        assert time.monotonic() < deadline, f"flow run {run.id} never started"
        time.sleep(1)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run.id)
    open_deployment(page, ui, "ingest-vcf")
    page.get_by_role("link", name=run.name, exact=True).first.click()
    page.wait_for_url(re.compile(rf".*/runs/flow-run/{run.id}.*"))


def wait_for_run_state(page: Any, state: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Reload the run page until its header shows ``state`` (a final state)."""
    badge = page.locator("main, body").get_by_text(state, exact=True).first
    deadline = time.monotonic() + timeout_s
    while True:
        page.reload()
        page.wait_for_load_state("networkidle")
        if badge.is_visible():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"run page did not show {state} within {timeout_s:.0f}s")
        time.sleep(3)


def run_menu_item(page: Any, name: str, attempts: int = 3) -> Any:
    """The item ``name`` of the run page's menu, opened; reopened if the page was still settling."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    item = page.get_by_role("menuitem", name=name)
    for attempt in range(attempts):
        page.get_by_role("button", name="Open menu").first.click()
        try:
            item.wait_for(timeout=10_000)
            return item
        except PlaywrightTimeout:  # close the menu and try again
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            page.wait_for_load_state("networkidle")
    return item


def run_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_load_state("networkidle")


def task_run_states(run_id: Any) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    states: dict[str, list[str]] = {}
    for task_run in runs:
        task = task_run.name.rsplit("-", 1)[0]  # "ingest-chunk-3c2" -> "ingest-chunk"
        states.setdefault(task, []).append(task_run.state.name if task_run.state else "?")
    return states


def save_block(block: Any, name: str, *, overwrite: bool = False) -> None:
    """``block.save`` from a plain thread (with this context: the Prefect API URL): Playwright's
    sync API runs an event loop in this one, which makes Prefect's sync/async dispatch return an
    un-awaited coroutine."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(contextvars.copy_context().run, block.save, name, overwrite=overwrite).result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def verify(dataset: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "vcfstream.cli.main", "verify", "--dataset", dataset, "--json"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout)


# -- the steps --------------------------------------------------------------------------------


def test_a_custom_run_started_in_the_ui_completes_and_shows_its_chunk_table(
        page: Any, scenario: dict[str, Any]) -> None:
    ui, dataset = scenario["ui"], scenario["dataset"]
    open_deployment(page, ui, "ingest-vcf")
    shot(page, "01-deployment-ingest-vcf")
    since = time.time()

    first = scenario["files"][0]
    start_custom_run(page, ui, paths=[first], fields={"dataset": dataset}, chunk_size=None,
                     screenshot="02-custom-run-form")
    run = flow_run_of(dataset, [first], since)
    open_run(page, ui, run)
    wait_for_run_state(page, "Completed")
    shot(page, "03-run-completed")

    run_tab(page, "Artifacts")
    page.get_by_text(artifact_key("vcfstream-chunks", dataset)).first.click()
    page.get_by_role("columnheader", name="chunk").first.wait_for()
    table = page.get_by_role("table").first
    assert "chr22.vcf.gz" in table.inner_text()
    assert "104 to kafka" in table.inner_text() or "kafka: 104" in table.inner_text()
    shot(page, "04-artifact-chunk-table", full_page=True)
    scenario["first_run"] = run


def test_a_run_with_a_dead_kafka_block_fails_and_names_the_cause_without_its_secret(
        page: Any, scenario: dict[str, Any], stack: Settings) -> None:
    from blocks import KafkaConnection, RoutingPolicy

    assert "first_run" in scenario, "the first step must have run"
    ui, dataset = scenario["ui"], scenario["dataset"]
    dead = f"127.0.0.1:{free_port()}"
    save_block(KafkaConnection(bootstrap_servers=dead, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                               sasl_username="vcfstream", sasl_password=scenario["secret"]), scenario["kafka_block"])
    # In-process breakers with a high threshold: the shared "kafka" breaker of other runs stays
    # closed, and the message names the refused broker rather than an open breaker.
    save_block(RoutingPolicy(strategy="fallback_only", breaker_storage="memory", breaker_fail_max=1000),
               scenario["routing_block"])
    since = time.time()

    start_custom_run(page, ui, paths=scenario["files"], chunk_size=40, screenshot="05-failing-run-form",
                     fields={"dataset": dataset, "blocks.kafka": scenario["kafka_block"],
                             "blocks.routing": scenario["routing_block"]})
    run = flow_run_of(dataset, scenario["files"], since)
    open_run(page, ui, run)
    wait_for_run_state(page, "Failed")
    run_tab(page, "Details")
    message = page.get_by_text("State Message").locator("xpath=..").inner_text()
    assert f"{dead} unreachable" in message and "kafka" in message
    shot(page, "06-failed-run-state-message", full_page=True)

    states = task_run_states(run.id)
    assert "Completed" in states["ingest-chunk"] and "Failed" in states["ingest-chunk"]
    seen = [page.inner_text("body")]
    for tab in ("Logs", "Parameters", "Artifacts"):
        run_tab(page, tab)
        seen.append(page.inner_text("body"))
    seen += _run_logs_and_artifacts(run.id)
    seen += [p.read_text(errors="replace") for p in (stack.home_dir / "prefect").glob("worker-*.log")]
    assert not [text for text in seen if scenario["secret"] in text]
    scenario["failed_run"] = run
    scenario["dead"] = dead


def test_retrying_the_fixed_run_in_the_ui_reuses_completed_chunks_and_publishes_each_variant_once(
        page: Any, scenario: dict[str, Any], stack: Settings) -> None:
    from blocks import KafkaConnection

    assert "failed_run" in scenario, "the failing step must have run"
    ui, run = scenario["ui"], scenario["failed_run"]
    save_block(KafkaConnection(bootstrap_servers=stack.kafka.bootstrap_servers), scenario["kafka_block"], overwrite=True)

    open_run(page, ui, run)
    wait_for_run_state(page, "Failed")  # the run's menu offers Retry once the page knows the state
    run_menu_item(page, "Retry").click()
    confirm = page.get_by_role("alertdialog")
    confirm.get_by_text("AwaitingRetry").wait_for()
    shot(page, "07-retry-dialog")
    confirm.get_by_role("button", name="Retry", exact=True).click()
    wait_for_run_state(page, "Completed")
    shot(page, "08-retried-run-completed")

    run_tab(page, "Task Runs")
    page.get_by_text("Cached", exact=True).first.wait_for()
    shot(page, "09-retried-task-runs-cached", full_page=True)
    states = task_run_states(run.id)
    assert "Cached" in states["ingest-chunk"]  # the chunk of the file the first run had ingested
    report = verify(scenario["dataset"])
    assert (report["duplicates"], report["missing"]) == (0, 0)
    assert report["ledger_published"] == 104 + 230  # chr22 + chr_m_indels alleles


def test_the_nightly_deployment_shows_its_schedule_and_next_runs(page: Any, scenario: dict[str, Any]) -> None:
    open_deployment(page, scenario["ui"], "nightly-cohort")
    page.get_by_text("At 02:00 AM", exact=True).first.wait_for()  # cron 0 2 * * *, shown in UTC
    limit = page.get_by_text("Concurrency Limit", exact=True).locator("xpath=..").inner_text()
    assert limit.split() == ["Concurrency", "Limit", "1"]  # nights do not overlap
    shot(page, "10-nightly-schedule", full_page=True)

    run_tab(page, "Upcoming")
    page.get_by_text("Scheduled", exact=True).first.wait_for()
    upcoming = page.get_by_text(re.compile(r"\d{4}/\d{2}/\d{2}\s+02:00:00\s+AM"))
    upcoming.first.wait_for()
    assert upcoming.count() >= 2  # the next nights, one run each
    shot(page, "11-nightly-upcoming-runs", full_page=True)


# -- helpers reading the API ------------------------------------------------------------------


def _run_logs_and_artifacts(run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        run = client.read_flow_run(run_id)
    return ([log.message for log in logs] + [json.dumps(a.data, default=str) for a in artifacts]
            + [run.state.message or "" if run.state else ""])
