"""Self-contained HTML pages: a backtest's report (equity and drawdown charts, metrics, trades)
and a sweep's heat map (a metric over two parameters).

The charts are inline SVG or coloured table cells drawn here: the pages load nothing from the network.
"""

from __future__ import annotations

import html
import json
import os
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ats.research.backtest import BacktestResult
    from ats.research.ladder_rules import RungVerdict
    from ats.research.sweep import SweepResult

_WIDTH, _HEIGHT, _PAD = 900, 260, 48


def _polyline(points: list[tuple[float, float]], x0: float, x1: float, y0: float, y1: float) -> str:
    span_x = (x1 - x0) or 1.0
    span_y = (y1 - y0) or 1.0
    coords = []
    for x, y in points:
        px = _PAD + (x - x0) / span_x * (_WIDTH - 2 * _PAD)
        py = _HEIGHT - _PAD - (y - y0) / span_y * (_HEIGHT - 2 * _PAD)
        coords.append(f"{px:.1f},{py:.1f}")
    return " ".join(coords)


def _chart(title: str, dates: list[str], values: list[float], fmt: Callable[[float], str], colour: str,
           fill: bool = False) -> str:
    if not values:
        return f"<p>{html.escape(title)}: no data</p>"
    xs = [date.fromisoformat(d).toordinal() for d in dates]
    x0, x1 = xs[0], xs[-1]
    y0, y1 = min(values), max(values)
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    line = _polyline(list(zip(xs, values, strict=True)), x0, x1, y0, y1)
    ticks = []
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        py = _HEIGHT - _PAD - i / 4 * (_HEIGHT - 2 * _PAD)
        ticks.append(f'<line x1="{_PAD}" x2="{_WIDTH - _PAD}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>'
                     f'<text x="{_PAD - 6}" y="{py + 4:.1f}" text-anchor="end">{html.escape(fmt(value))}</text>')
    area = ""
    if fill:
        first_x, last_x = _PAD, _WIDTH - _PAD
        zero_y = _HEIGHT - _PAD - (0 - y0) / (y1 - y0) * (_HEIGHT - 2 * _PAD)
        area = (f'<polygon points="{first_x},{zero_y:.1f} {line} {last_x},{zero_y:.1f}" '
                f'fill="{colour}" fill-opacity="0.25" stroke="none"/>')
    labels = (f'<text x="{_PAD}" y="{_HEIGHT - _PAD + 18}">{html.escape(dates[0])}</text>'
              f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - _PAD + 18}" text-anchor="end">{html.escape(dates[-1])}</text>')
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" role="img" aria-label="{html.escape(title)}">'
            f'{"".join(ticks)}{area}<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            f'{labels}</svg></figure>')


def drawdown_series(equity: list[float]) -> list[float]:
    """Drawdown at each point as a negative fraction of the running peak (0 at a new high)."""
    peak = float("-inf")
    out = []
    for value in equity:
        peak = max(peak, value)
        out.append(value / peak - 1 if peak > 0 else 0.0)
    return out


def _fmt_metric(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if name in {"win_rate", "total_return", "cagr", "max_drawdown", "exposure"}:
        return f"{value * 100:.2f}%"
    if name == "sharpe":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return html.escape(str(value))


def render_html(result: BacktestResult, verdict: RungVerdict | None = None) -> str:
    """The report page of ``result`` (a :class:`ats.research.backtest.BacktestResult`) as a string."""
    curve = result.equity_curve
    dates = [p["date"] for p in curve]
    equity = [float(p["equity"]) for p in curve]
    drawdown = drawdown_series(equity)
    metrics = result.metrics()
    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_fmt_metric(k, v)}</td></tr>"
                   for k, v in metrics.items())
    params = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in result.params.items())
    trades = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(t[k]))}</td>" for k in
                         ("entry_date", "exit_date", "quantity", "entry_price", "exit_price"))
        + f'<td class="{"pos" if t["pnl"] > 0 else "neg"}">{t["pnl"]:,.2f}</td></tr>'
        for t in result.trades
    )
    verdict_html = ""
    if verdict is not None:
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.reasons)
        verdict_html = (f'<h2 class="{"pos" if verdict.passed else "neg"}">Verdict: {verdict.verdict}</h2>'
                        f"<ul>{reasons}</ul>")
    title = f"{result.strategy} on {result.instrument_id}: {result.start} to {result.end}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ padding: 2px 10px; text-align: right; }}
th {{ text-align: left; }} tbody tr:nth-child(odd) {{ background: #f4f4f4; }}
svg text {{ font-size: 11px; fill: #555; }} .grid {{ stroke: #ddd; stroke-width: 1; }}
.pos {{ color: #1a7f37; }} .neg {{ color: #c0392b; }} figcaption {{ font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(result.bar_type)} · {result.bars} bars · code fingerprint <code>{html.escape(result.fingerprint[:16])}</code>
· {html.escape(result.fill_model)}</p>
{verdict_html}
{_chart("Equity (USD)", dates, equity, lambda v: f"{v:,.0f}", "#1f6feb")}
{_chart("Drawdown", dates, drawdown, lambda v: f"{v * 100:.1f}%", "#c0392b", fill=True)}
<h2>Metrics</h2><table>{rows}</table>
<h2>Parameters</h2><table>{params}</table>
<h2>Trades ({len(result.trades)})</h2>
<table><thead><tr><th>entry</th><th>exit</th><th>quantity</th><th>entry price</th><th>exit price</th><th>P&amp;L</th></tr></thead>
<tbody>{trades}</tbody></table>
</body></html>
"""


def check_output_path(path: str | Path, option: str) -> None:
    """Refuse a page path (``--report``, ``--heatmap``) that cannot be written, before the work
    that fills it runs: a directory, a path under a file, or one whose nearest existing
    directory is not writable (missing directories are created when the page is written)."""
    from ats.core.errors import InputError

    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {path}: is a directory; give a file name like {option.lstrip('-')}.html")
    existing = next(p for p in target.absolute().parents if p.exists())
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, not a directory; give a path in a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: directory {existing} is not writable")


def _write_whole(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` whole or not at all (a scratch file beside it, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        scratch.write_text(text, encoding="utf-8")
        scratch.replace(target)
    finally:
        scratch.unlink(missing_ok=True)


def write_html_report(result: BacktestResult, path: Path | str, verdict: RungVerdict | None = None) -> Path:
    """Write the report of ``result`` (and optionally its ladder ``verdict``) to ``path`` (whole or not at all)."""
    target = Path(path)
    _write_whole(target, render_html(result, verdict))
    return target


# --------------------------------------------------------------------------------------------
# Sweep heat map
# --------------------------------------------------------------------------------------------
def _heat_colour(fraction: float) -> str:
    """Red (worst, 0) through yellow to green (best, 1)."""
    fraction = min(1.0, max(0.0, fraction))
    hue = 120 * fraction
    return f"hsl({hue:.0f}, 70%, 78%)"


def _heat_cells(sweep: SweepResult, x: str, y: str | None) -> dict[tuple[str, str], Any]:
    """The metric per (x value, y value): the best over the other parameters when more than two vary."""
    from ats.research.sweep import rank

    cells: dict[tuple[str, str], Any] = {}
    for point in reversed(rank(sweep.points, sweep.sort_by)):  # best last: it wins each cell
        key = (json.dumps(point.params[x]), json.dumps(point.params[y]) if y else "")
        cells[key] = point.metrics.get(sweep.sort_by)
    return cells


def render_sweep_heatmap(sweep: SweepResult, x: str, y: str | None) -> str:
    """The heat map page of ``sweep`` (a :class:`ats.research.sweep.SweepResult`) over ``x`` and ``y``."""
    from ats.research.sweep import METRICS

    metric = sweep.sort_by
    cells = _heat_cells(sweep, x, y)
    xs = [json.dumps(v) for v in sweep.grid[x]]
    ys = [json.dumps(v) for v in sweep.grid[y]] if y else [""]
    values = [v for v in cells.values() if isinstance(v, (int, float))]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    best = sweep.best.params
    best_key = (json.dumps(best[x]), json.dumps(best[y]) if y else "")
    body = []
    for yv in ys:
        row = [f"<th>{html.escape(yv)}</th>"]
        for xv in xs:
            value = cells.get((xv, yv))
            if isinstance(value, (int, float)) and high > low:
                fraction = (value - low) / (high - low)
                fraction = fraction if METRICS[metric] else 1 - fraction
            else:
                fraction = 0.5
            style = f"background:{_heat_colour(fraction)}" if value is not None else ""
            mark = ' class="best"' if (xv, yv) == best_key else ""
            row.append(f'<td style="{style}"{mark}>{_fmt_metric(metric, value)}</td>')
        body.append("<tr>" + "".join(row) + "</tr>")
    others = [name for name in sweep.grid if name not in (x, y) and len(sweep.grid[name]) > 1]
    note = (f"<p>More than two parameters vary: each cell shows the best {html.escape(metric)} over "
            f"{html.escape(', '.join(others))}.</p>" if others else "")
    oos = ""
    if sweep.out_of_sample:
        m = sweep.out_of_sample["metrics"]
        rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_fmt_metric(k, v)}</td>"
                       f"<td>{_fmt_metric(k, sweep.best.metrics.get(k))}</td></tr>" for k, v in m.items())
        oos = (f"<h2>Chosen point out of sample ({html.escape(sweep.out_of_sample['start'])} to "
               f"{html.escape(sweep.out_of_sample['end'])})</h2>"
               f"<table><thead><tr><th>metric</th><th>out of sample</th><th>in sample</th></tr></thead>{rows}</table>")
    warning = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in sweep.warnings)
    title = (f"{sweep.strategy} on {sweep.instrument}: {metric} over {x}" + (f" × {y}" if y else "")
             + f", {sweep.data_start} to {sweep.data_end}")
    y_label = html.escape(y) if y else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ padding: 4px 10px; text-align: right; }}
.heat td {{ border: 1px solid #fff; min-width: 4em; }} .heat td.best {{ outline: 3px solid #222; font-weight: bold; }}
.warn {{ background: #fff4ce; border-left: 4px solid #d4a72c; padding: 6px 10px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(sweep.points)} points · sorted by {html.escape(metric)} ({'higher' if METRICS[metric] else 'lower'} is better)
· code fingerprint <code>{html.escape(sweep.fingerprint[:16])}</code>
· best: <code>{html.escape(json.dumps(best))}</code> (outlined)</p>
{warning}
<table class="heat"><thead><tr><th>{y_label} ↓ / {html.escape(x)} →</th>{"".join(f"<th>{html.escape(v)}</th>" for v in xs)}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
{note}
{oos}
</body></html>
"""


def write_sweep_heatmap(sweep: SweepResult, path: Path | str, x: str, y: str | None) -> Path:
    """Write the heat map page to ``path`` (whole or not at all)."""
    target = Path(path)
    _write_whole(target, render_sweep_heatmap(sweep, x, y))
    return target
