"""The IB gateway seen from ats: probe it, watch its health, start and stop it.

* :mod:`ats.gateway.probe`: one API handshake (connect, version exchange, START_API, wait for
  ``managedAccounts`` and ``nextValidId``) → :class:`ProbeResult`;
* :mod:`ats.gateway.health`: the health state machine persisted in the store
  (``gateway_health``/``gateway_probes``), its alerts and maintenance windows
  (:func:`run_health_check`, :class:`HealthPolicy`);
* :mod:`ats.gateway.controllers`: start/stop the paper and live gateways (the embedded
  simulator or docker compose) and swap between them, never both up.
"""

from __future__ import annotations

from ats.gateway.probe import PROBE_CLIENT_ID, ProbeResult, probe, probe_mode

__all__ = ["PROBE_CLIENT_ID", "ProbeResult", "probe", "probe_mode"]
