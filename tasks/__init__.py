"""Celery tasks. Each is thin: ids in, one session scope, one service call, an explicit retry
policy (see app/celery_app.py for the acknowledgement policy they all share)."""
