"""The worker entry point, ``dramatiq jobkit.actors``, and the built-in task handlers (one module per group).

Importing this package only builds the broker (Dramatiq's CLI needs it as the global broker); jobs.yaml is read when
the worker process boots, so importing ``jobkit.actors.email`` elsewhere has no other side effect.
"""

from __future__ import annotations

import sys

import dramatiq

from jobkit.errors import SettingsError
from jobkit.runtime import ProjectBoot, open_broker
from jobkit.settings import Settings

try:
    _settings = Settings.from_env()
    broker = open_broker(_settings, extra_middleware=[ProjectBoot(_settings)])
except SettingsError as _error:
    print(f"jobkit: {_error}", file=sys.stderr)
    raise SystemExit(1) from None

dramatiq.set_broker(broker)
