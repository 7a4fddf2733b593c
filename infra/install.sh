#!/usr/bin/env bash
# Idempotent setup for a Debian 12 machine, as root: system packages (only those missing), the
# .venv with pinned dependencies (constraints.txt), and the Kafka broker jars (infra/kafka/pom.xml).
# A second run only checks and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

say() { printf 'install: %s\n' "$*" >&2; }

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

# The first python3.x on PATH that is at least 3.11 (Debian 12's python3 is 3.11).
find_python() {
  local candidate
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# --- system packages ------------------------------------------------------------------------
missing=()
if ! command -v java >/dev/null || (($(java_major) < 17)); then missing+=(openjdk-17-jre-headless); fi
command -v mvn >/dev/null || missing+=(maven)
command -v bcftools >/dev/null || missing+=(bcftools)
command -v tabix >/dev/null || missing+=(tabix)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v prometheus >/dev/null || missing+=(prometheus)
# A PostgreSQL built with OpenSSL, for the TLS test (the embedded wheel's is built without SSL).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
if [[ ! -x .venv/bin/python ]]; then
  if ! PYTHON=$(find_python); then
    missing+=(python3)
  fi
  # Debian splits venv/ensurepip out of the interpreter package.
  if [[ -z ${PYTHON:-} ]] || ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
  fi
fi
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- Python environment ---------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  PYTHON=$(find_python) || { say "no python3 >= 3.11 found"; exit 1; }
  say "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependency declarations changed since the last successful install.
stamp=.venv/.vcfstream-install
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ $(cat "$stamp" 2>/dev/null) != "$wanted" ]]; then
  say "pip install -c constraints.txt -e '.[test]'"
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
  echo "$wanted" >"$stamp"
fi

# --- Kafka jars -----------------------------------------------------------------------------
# Same code path as `vcfstream services up` (which would fetch them too); a no-op when present.
.venv/bin/python -c '
from vcfstream.devservices.services import fetch_kafka_libs
from vcfstream.settings import load_settings
settings = load_settings()
print(f"install: Kafka {fetch_kafka_libs(settings)} jars in {settings.kafka_libs}")
'
