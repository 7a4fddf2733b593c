"""vcfstream domain code: plain, typed Python; Prefect wrappers live in tasks/prefect_tasks.py."""
