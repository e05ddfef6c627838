"""The worker entry point: ``dramatiq jobkit.actors`` (any Dramatiq flag works).

Importing this package builds the broker from the environment and jobs.yaml, with every task declared, and makes it
Dramatiq's global broker (which is how Dramatiq's CLI finds it). The built-in handlers live in
:mod:`jobkit.builtin`; handler paths written ``jobkit.actors.email:send_email`` (their first name) still resolve
there (see :mod:`jobkit.config.imports`), without importing this package.
"""

from __future__ import annotations

import dramatiq

from jobkit.bootstrap import worker_broker

broker = worker_broker()
dramatiq.set_broker(broker)
