"""Prefect tasks of the audit log: each calls one ``ats`` function."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(name="publish-audit-anchor", retries=2, retry_delay_seconds=30, log_prints=True, cache_policy=NO_CACHE)
def publish_audit_anchor() -> dict[str, Any]:
    """Publish the audit head outside the database (anchor file, apprise); fails if a target refused it."""
    from ats.core.errors import AtsError
    from ats.governance.audit_anchor import publish

    anchor, delivered = publish()
    print(f"anchored audit head seq {anchor.seq} {anchor.hash} (apprise: {delivered})")
    if delivered is False:
        raise AtsError(f"the audit head seq {anchor.seq} was not delivered to every apprise target")
    return {"anchor": anchor.as_dict(), "delivered": delivered}
