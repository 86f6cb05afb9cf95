"""Celery tasks. Each is thin: ids in, one unit of work, one service call, the shared retry
policy of ``app.celery_app.chatlink_task``. A module here is named after the service it drives
(``tasks/call_endings.py`` drives ``app/services/call_endings.py``).

Services publish tasks by reference (``enqueue_after_commit(session, call_ending_tasks.end_call,
call_id)``), so they import task modules at the top. The other way round, a task imports the
service it drives inside its own body: services import each other's names, and a task module that
imported a service at its top would make that a cycle. For the same reason this file imports
nothing: ``celery_init_app`` imports every module of the package (``TASK_MODULES``), so web and
worker processes register the same tasks. mypy checks the imports in task bodies like any other.
"""

from __future__ import annotations

import pkgutil

TASK_MODULES = tuple(
    f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_")
)
