#!/usr/bin/env bash
# The test command: install (a few seconds when already done), then pytest with any arguments,
# e.g. `bash infra/test.sh -k services -x`. Services started by the tests' fixture are stopped
# at the end; services that were already running are left running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
exec .venv/bin/python -m pytest "$@"
