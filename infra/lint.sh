#!/usr/bin/env bash
# Static checks, configured in pyproject.toml: ruff (lint and import order), mypy (the library,
# tasks, flows, blocks) and import-linter (layer contracts: the library imports no Prefect, no
# module cycles across the stages, only the CLI imports the dev services).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
