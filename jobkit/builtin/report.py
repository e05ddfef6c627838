"""report:generate: the job-system report for a period, as HTML and CSV under ``JOBKIT_DATA_DIR/reports``, mailed
to ``to`` when given (the HTML as the mail's HTML part, both files attached).

A bad period or address is permanent (:class:`~jobkit.SkipRetry`, checked before any work); Redis or the mail
server being down raises, so the task's retry policy applies.
"""

from __future__ import annotations

import logging

from jobkit.builtin.mail import build_message, mailer_for
from jobkit.config.addresses import check_address
from jobkit.errors import BadMessage, SkipRetry
from jobkit.services.client import Client, needs_client
from jobkit.services.queues import Queues
from jobkit.services.reports import PERIODS, build_report, render_text, write

__all__ = ["generate_report"]

log = logging.getLogger("jobkit.reports")


@needs_client()
def generate_report(client: Client, period: str = "week", to: str | None = None) -> dict[str, str]:
    """Write the report of the last ``period`` (``day``, ``week`` or ``month``); returns the files' paths."""
    if not isinstance(period, str) or period not in PERIODS:
        raise SkipRetry(f"period: expected one of {', '.join(PERIODS)}, found {period!r}")
    try:
        recipient = check_address(to, "to") if to is not None else None
    except BadMessage as exc:
        raise SkipRetry(str(exc)) from None
    report = build_report(Queues(client), period)
    html_path, csv_path = write(report, client.settings.data_dir / "reports")
    log.info("report %s written: %s, %s", period, html_path, csv_path)
    if recipient is not None:
        settings = client.settings
        try:
            message = build_message(
                mail_from=settings.mail_from,
                to=recipient,
                subject=f"jobkit report ({period}): {report.start} to {report.end}",
                text=render_text(report),
                html_body=html_path.read_text(encoding="utf-8"),
            )
            message.add_attachment(html_path.read_bytes(), maintype="text", subtype="html", filename=html_path.name)
            message.add_attachment(csv_path.read_bytes(), maintype="text", subtype="csv", filename=csv_path.name)
            where = mailer_for(settings).send(message)
        except BadMessage as exc:
            raise SkipRetry(str(exc)) from None
        log.info("report %s mailed to %s via %s", period, recipient, where)
    return {"html": str(html_path), "csv": str(csv_path)}
