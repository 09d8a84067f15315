"""The ``audit-anchor`` flow: publish the audit log's head outside the database.

Why: the anchor file beside the audit key is written after every append, but it lives on the
same machine as the database.  This flow sends the head (seq, hash, HMAC) through apprise
(``ATS_ALERT_URLS``) to somewhere else on a schedule (hourly, see ``deployments``), so even a
rewrite of the database *and* the anchor file can be checked against a published head with
``ats audit verify --anchor SEQ:HASH``.  ``ats audit anchor`` does the same by hand.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.audit import publish_audit_anchor

DEPLOYMENT_NAME = "audit-anchor"
SCHEDULE_CRON = "0 * * * *"  # hourly, on the hour


@flow(name="audit-anchor", log_prints=True, retries=0)
def audit_anchor() -> dict[str, Any]:
    """Publish the audit head to the anchor file and through apprise."""
    return publish_audit_anchor()


if __name__ == "__main__":
    audit_anchor()
