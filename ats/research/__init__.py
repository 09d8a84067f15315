"""From bars to a verdict: the bar catalog (CSV import, gateway history), the backtest rung and
its metrics, HTML reports, parameter sweeps, and the research ladder (pure rules in
:mod:`.ladder_rules`, the stored record in :mod:`.ladder`).

Imports ``ats.core``, ``ats.store``, ``ats.governance.audit`` and the strategies."""
