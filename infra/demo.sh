#!/usr/bin/env bash
# The main job on embedded defaults, on a fresh machine: install, start PostgreSQL, Kafka and
# the Prefect server, generate an example VCF (made by the project), ingest it, verify it.
# Run it again: the second ingest publishes nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
.venv/bin/vcfstream services up
example=.vcfstream/examples/example.vcf.gz
if [[ ! -f $example ]]; then
  .venv/bin/python bench/synth_vcf.py --records 20000 --samples 3 -o "$example" >/dev/null
fi
.venv/bin/vcfstream ingest "$example" --dataset example
.venv/bin/vcfstream verify --dataset example
echo "Open the Prefect UI at http://127.0.0.1:4200 to see the run and its chunk table; its login is the"
echo "whole auth string \`.venv/bin/vcfstream services credentials\` prints for prefect."
