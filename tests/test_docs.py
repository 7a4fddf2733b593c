"""The documentation stays true to the tree: docs/configuration.md matches the settings models,
every relative link and every repository path the docs name exists, and the README stays short.

No services needed.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 260

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"`([^`\n]+)`")
# Backticked repository paths: what the docs tell a reader to open.
REPO_PATH = re.compile(r"^(?:vcfstream|tasks|flows|blocks|infra|bench|tests|docs)/[\w./-]*$|^prefect\.yaml$")
MADE_BY_RUNS = ("bench/out/",)  # folders the benchmarks create (ignored by git, absent from a clone)


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_configuration", DOCS / "make_configuration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_configuration_page_is_generated_from_the_current_settings() -> None:
    problem = _load_generator().check()
    assert problem is None, problem


def test_the_configuration_page_never_shows_a_secret_default() -> None:
    from pydantic import SecretStr

    from vcfstream.settings import Settings

    generator = _load_generator()
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    models, secrets = [Settings], 0
    while models:
        for name, info in models.pop().model_fields.items():
            group = generator.group_model(info.annotation)
            if group is not None:
                models.append(group)
            elif generator.is_secret(info.annotation):
                secrets += 1
                if isinstance(info.default, SecretStr) and info.default.get_secret_value():
                    assert info.default.get_secret_value() not in text, name
    assert text.count("secret, unset by default") + text.count("secret (default not shown)") == secrets


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto:, in-page anchors
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_path_named_in_code_exists(page: Path) -> None:
    missing = [
        word
        for code in CODE.findall(page.read_text(encoding="utf-8"))
        for word in code.replace(",", " ").split()
        if REPO_PATH.match(word) and not word.startswith(MADE_BY_RUNS) and not (REPO / word.rstrip(".")).exists()
    ]
    assert not missing, f"{page.name}: names paths that do not exist: {missing}"


def test_the_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_figures_are_dated_not_numbered_by_work_session(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"\bsession \d", text, re.IGNORECASE), page.name
