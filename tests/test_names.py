"""Names checked at the door (vcfstream/names.py): one dataset rule for the CLI, the flows and the
settings (so the blocks), topic names every platform accepts, artifact keys that never collide."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from vcfstream.names import (
    DATASET_RULE,
    KAFKA_TOPIC_MAX,
    InvalidName,
    artifact_key,
    check_dataset,
    dataset_problem,
)
from vcfstream.publish.iggy import name_problem as iggy_name_problem
from vcfstream.settings import KafkaSettings, Settings

REPO = Path(__file__).resolve().parents[1]
KAFKA_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")  # Kafka's topic name characters
PREFECT_ARTIFACT_KEY = re.compile(r"[a-z0-9-]+")  # what Prefect accepts as an artifact key

VALID = ["default", "cohort1", "Cohort_A", "cohort-a", "cohort_a", "a", "7days", "X" * 100, "2024-batch", "ds_0f3a"]
INVALID = ["", "Müller cohort/2", "a.b", "_x", "-x", "a b", "a/b", "2024", "0", "X" * 101, "é", "a\n", "a:b"]


@pytest.mark.parametrize("name", VALID)
def test_a_valid_dataset_names_a_kafka_topic_an_iggy_topic_and_an_artifact(name: str) -> None:
    assert check_dataset(name) == name and re.fullmatch(DATASET_RULE, name)
    topic = KafkaSettings().topic(name)
    assert KAFKA_LEGAL.fullmatch(topic) and len(topic) <= KAFKA_TOPIC_MAX
    assert iggy_name_problem(name) is None
    assert PREFECT_ARTIFACT_KEY.fullmatch(artifact_key("vcfstream-chunks", name))


@pytest.mark.parametrize("name", INVALID)
def test_an_invalid_dataset_name_is_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(DATASET_RULE)) as caught:
        check_dataset(name)
    assert dataset_problem(name) in str(caught.value)


def test_the_refusal_says_what_is_wrong_with_the_name() -> None:
    assert dataset_problem("Müller cohort/2") == "contains ' ', '/', 'ü'"
    assert dataset_problem("2024") == "is digits only (Iggy would read it as a numeric topic id)"
    assert dataset_problem("X" * 101) == "is 101 characters long"
    assert dataset_problem("_x") == "does not start with a letter or digit"


def test_distinct_names_get_distinct_artifact_keys_and_topics() -> None:
    names = ["Cohort_A", "cohort-a", "cohort_a", "COHORT-A", "cohort-A", "cohorta"]
    assert len({artifact_key("vcfstream-chunks", name) for name in names}) == len(names)
    # Kafka refuses a topic equal to an existing one once '.' and '_' are read alike: no '.' in datasets
    assert len({KafkaSettings().topic(name).replace(".", "_") for name in names}) == len(names)
    assert artifact_key("vcfstream-chunks", "Cohort_A").startswith("vcfstream-chunks-cohort-a-")
    assert artifact_key("vcfstream-cohort", "Cohort_A") == artifact_key("vcfstream-cohort", "Cohort_A")


def test_topic_prefixes_and_stream_names_the_platforms_refuse_are_refused_by_the_settings() -> None:
    for prefix in ("vcfstream variants.", "vcf/", "x" * 150):
        with pytest.raises(ValidationError, match="topic_prefix"):
            Settings().with_groups(kafka={"topic_prefix": prefix})
    assert Settings().with_groups(kafka={"topic_prefix": "x" * 149}).kafka.topic_prefix == "x" * 149
    for stream in ("123", "", "é" * 128):
        with pytest.raises(ValidationError, match="stream name"):
            Settings().with_groups(iggy={"stream": stream})


def test_the_cli_refuses_a_dataset_name_at_once_with_the_rule_before_anything_runs(tmp_path: Path) -> None:
    small = tmp_path / "small.vcf"
    small.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tG\t.\t.\t.\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vcfstream.cli.main", "ingest", str(small), "--dataset",
                           "Müller cohort/2"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert time.monotonic() - started < 10
    assert done.returncode == 2  # a usage error
    assert "argument --dataset: dataset name 'Müller cohort/2' contains ' ', '/', 'ü'" in done.stderr
    assert DATASET_RULE in done.stderr
    verify = subprocess.run([sys.executable, "-m", "vcfstream.cli.main", "verify", "--dataset", "a.b"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert verify.returncode == 2 and "dataset name 'a.b' contains '.'" in verify.stderr


def test_every_prefect_task_has_a_timeout() -> None:
    from prefect import Task

    import flows.cohort
    import flows.ingest
    import tasks.chunk
    import tasks.cohort

    found = {name: obj for module in (tasks.chunk, tasks.cohort, flows.cohort, flows.ingest)
             for name, obj in vars(module).items() if isinstance(obj, Task)}
    assert {"plan_file", "ingest_chunk", "store_chunks", "check_file_task", "ingest_files_task"} <= set(found)
    assert {name: bool(task.timeout_seconds) for name, task in found.items()} == dict.fromkeys(found, True)
