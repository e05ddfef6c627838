"""export:process: run a query declared under ``exports:`` in jobs.yaml and write it as csv, excel (xlsx) or pdf.

The payload names the query (``export``) and gives its parameters (``params``); it never carries SQL. An unknown
export, a parameter that does not bind or a bad filename raises :class:`~jobkit.SkipRetry`; a locked or missing
database raises, so the task's retry policy applies. It reports rows written of rows expected through
``jobkit.progress()``, which the API's task object and the dashboard's task page show while it runs.
"""

from __future__ import annotations

import logging
from typing import Any

from jobkit.builtin.exports import bind_parameters, check_filename, export_filename, run_export
from jobkit.engine.running import progress
from jobkit.errors import ExportError, SkipRetry, did_you_mean
from jobkit.services.client import Client, needs_client

__all__ = ["process_export"]

log = logging.getLogger("jobkit.export")


@needs_client()
def process_export(
    client: Client,
    export_type: str,
    export: str,
    params: dict[str, Any] | None = None,
    user_id: int | str | None = None,
    filename: str | None = None,
) -> None:
    """Write the rows of the declared query ``export`` to ``JOBKIT_DATA_DIR/exports/<filename>``."""
    try:
        spec = client.project.exports.get(export) if isinstance(export, str) else None
        if spec is None:
            declared = set(client.project.exports)
            hint = did_you_mean(str(export), declared) or "declared: " + (", ".join(sorted(declared)) or "none")
            raise ExportError(
                f"export: {export!r} is not a query declared under exports: in jobs.yaml ({hint}); "
                "exports never run SQL from a payload"
            )
        name = check_filename(filename, export_type) if filename is not None else export_filename(user_id, export_type)
        values = bind_parameters(spec, params, user_id)
        result = run_export(client.settings, spec, export_type, values, name, progress=progress)
    except ExportError as exc:
        raise SkipRetry(str(exc)) from None
    log.info("export %s: %d rows, %d bytes -> %s", export, result.rows, result.bytes, result.path)
