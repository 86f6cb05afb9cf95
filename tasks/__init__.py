"""Celery tasks. Each is thin: ids in, one session scope, one service call, an explicit retry
policy (see app/celery_app.py for the acknowledgement policy they all share).

Every task module is imported here so that web and worker processes register the same names.
"""

from tasks import (
    calls,  # noqa: F401
    email,  # noqa: F401
    maintenance,  # noqa: F401
    payments,  # noqa: F401
    photos,  # noqa: F401
    requests,  # noqa: F401
)
