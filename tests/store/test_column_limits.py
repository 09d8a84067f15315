"""Every audited string a user chooses fits its column on PostgreSQL (which enforces lengths).

SQLite ignores ``VARCHAR(n)``; PostgreSQL refuses a longer value, so an input accepted at the
edge but longer than its column made every audited action fail there (``ats kill`` included).
The limits are refused at the edge instead (settings, instrument ids); free text (notes,
reasons) is stored in unbounded ``TEXT`` columns.
"""

from __future__ import annotations

import pytest

from ats.core.errors import InputError
from ats.core.params import INSTRUMENT_ID_MAX_CHARS, check_instrument_id
from ats.core.settings import OPERATOR_MAX_CHARS, load_settings
from ats.governance import approvals, audit
from ats.store import open_store
from support import run_ats

LONGEST_INSTRUMENT = "Q" * (INSTRUMENT_ID_MAX_CHARS - len(".NASDAQ")) + ".NASDAQ"


def test_the_longest_accepted_operator_kills_and_clears_on_postgresql(pg_url: str) -> None:
    env = {"ATS_DATABASE_URL": pg_url, "ATS_OPERATOR": "o" * OPERATOR_MAX_CHARS}
    reason = "a long reason " * 500

    killed = run_ats("kill", "--mode", "paper", "--reason", reason, env=env)
    cleared = run_ats("kill", "--clear", "--mode", "paper", "--reason", reason, env=env)

    assert (killed.returncode, cleared.returncode) == (0, 0), killed.stderr + cleared.stderr
    rows = audit.list_rows(store=open_store(pg_url))
    assert [(r.action, r.actor) for r in rows] == [("kill.latch", "o" * 200), ("kill.clear", "o" * 200)]


def test_the_longest_accepted_instrument_and_a_long_note_are_approved_on_postgresql(pg_url: str) -> None:
    store = open_store(pg_url)
    note = "thirty paper days, parity 1.0; " * 300

    approval = approvals.approve_live("ibs_reversion", LONGEST_INSTRUMENT, note, "o" * OPERATOR_MAX_CHARS, store=store)
    approvals.revoke_live("ibs_reversion", LONGEST_INSTRUMENT, "o" * OPERATOR_MAX_CHARS, note, store=store)

    assert approval.instrument == LONGEST_INSTRUMENT
    assert [r.action for r in audit.list_rows(store=store)] == ["approval.approve", "approval.revoke"]


def test_an_instrument_id_longer_than_its_column_is_refused_before_anything_is_written(pg_url: str) -> None:
    store = open_store(pg_url)
    too_long = "Q" + LONGEST_INSTRUMENT

    with pytest.raises(InputError, match="is longer than 100 characters"):
        approvals.approve_live("ibs_reversion", too_long, "ok", "alice", store=store)

    assert audit.count(store) == 0
    assert check_instrument_id(LONGEST_INSTRUMENT) == LONGEST_INSTRUMENT


def test_an_operator_longer_than_the_actor_column_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="ATS_OPERATOR: expected at most 200 characters"):
        load_settings({"ATS_OPERATOR": "o" * (OPERATOR_MAX_CHARS + 1)})
