"""Celery entry point: ``celery -A celery_worker worker`` and ``celery -A celery_worker beat``."""

import sys

from app import create_app
from app.config import ConfigError

try:
    celery = create_app().extensions["celery"]
except ConfigError as error:
    sys.exit(f"chatlink: {error}")
