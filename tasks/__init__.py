"""Prefect tasks: thin wrappers over the library (``vcfstream``), one module per stage."""

import logging


class _ThreadTimeoutNotice(logging.Filter):
    """Drops Prefect's per-run notice that a synchronous task's timeout cannot interrupt blocking
    calls in a worker thread. Every task here has a timeout and runs in a thread, so the notice
    came with every chunk; the calls that could block bound themselves (reader pipes, broker,
    PostgreSQL and store lock timeouts), and the task timeout still marks an overrun task."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timeout of ") and "worker thread" in message)


logging.getLogger("prefect.task_runs").addFilter(_ThreadTimeoutNotice())
