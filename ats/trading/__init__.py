"""A trading session from start to stop.

* :mod:`.gates` — the one gate sequence in front of a session;
* :mod:`.node` — the Nautilus TradingNode's configuration (IB clients, risk caps, cache, logs);
* :mod:`.runner` — :func:`~ats.trading.runner.run_session`: the last checks, the node, the session record;
* :mod:`.supervisor` — the session's guard: halt, kill switch, stop, start-up watchdog, helper threads;
* :mod:`.interposer` — every order intent audited before the risk engine, the notional cap;
* :mod:`.telemetry` — bars recorded, periodic snapshots;
* :mod:`.writer` — the session's one store writer: every row it writes, in order, on one thread;
* :mod:`.stop_time` — ``--until``/``--for`` and the market close;
* :mod:`.summary` — the plan summary the operator confirms and the summary a session leaves;
* :mod:`.run_link` — the Prefect flow run a session follows; :mod:`.node_log` — the masked node log.

Imports everything below it (core, store, governance, gateway, research, strategies); nothing
in ``ats`` but the CLI and the entry points imports it."""
