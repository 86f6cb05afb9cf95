"""gunicorn reads this file from the working directory by itself (``gunicorn wsgi:app``), so the
Procfile and ``make run`` get these hooks without naming it. Flags on the command line still set
workers, threads and the bind address."""

# Imported here, at start-up, not inside the hook: hooks run from the master's SIGCHLD handler,
# where an import can interrupt another one half-way. Importing app.metrics also exports
# PROMETHEUS_MULTIPROC_DIR to every worker the master forks.
from app.metrics import mark_process_dead


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # A worker exited: drop its live gauges from the shared metrics directory (its counters stay).
    mark_process_dead(worker.pid)
