"""IB fixed pricing for US stocks: the one commission formula of the backtest and the simulator.

USD 0.005 per share, at least USD 1.00, at most 1 % of the trade value, rounded to the cent.
"""

from __future__ import annotations

from decimal import Decimal

IB_PER_SHARE = 0.005
IB_MINIMUM = 1.00
IB_MAX_RATE = 0.01


def ib_commission(quantity: float | Decimal, price: float, per_share: float = IB_PER_SHARE,
                  minimum: float = IB_MINIMUM, max_rate: float = IB_MAX_RATE) -> float:
    """IB fixed-rate commission of one fill: ``min(max(per_share·q, minimum), max_rate·q·price)``."""
    shares = abs(float(quantity))
    return round(min(max(per_share * shares, minimum), max_rate * (shares * price)), 2)
