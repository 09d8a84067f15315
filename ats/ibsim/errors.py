"""Errors of the IB Gateway simulator (all under :class:`ats.core.errors.AtsError`)::

    AtsError
    └── InputError(ValueError)
        └── SimInputError        bad simulator input: account id, SYMBOL.VENUE, CSV file, date, speed
"""

from __future__ import annotations

from ats.core.errors import InputError


class SimInputError(InputError):
    """Bad input to the simulator: the message says what is wrong and what is expected."""
