"""The one account-id rule (ats.core.accounts): paper DU+digits, live U+digits."""

from __future__ import annotations

import pytest

from ats.core.accounts import account_mode, account_problem, check_account_id, is_account_of
from ats.core.errors import InputError


@pytest.mark.parametrize(("account", "mode"), [
    ("DU1234567", "paper"), ("U1234567", "live"), ("DF1234567", None), ("F1234567", None),
    ("U1234567\n", None), (" DU1", None), ("U１２３", None), ("", None), (None, None), ("DU", None),
])
def test_account_mode_reads_the_form(account: str | None, mode: str | None) -> None:
    assert account_mode(account) == mode
    assert is_account_of("paper", account) is (mode == "paper")
    assert is_account_of("live", account) is (mode == "live")


def test_account_problem_never_repeats_the_id() -> None:
    assert account_problem("U1234567", "live") is None
    assert account_problem("DU1234567", "live") == "expected a live account id: U followed by digits (a DU… id is a paper account)"
    assert account_problem("U1234567", "paper") == "expected a paper account id: DU followed by digits"
    assert "1234567" not in (account_problem("DU1234567\n", "paper") or "")
    assert "whitespace or a control character" in (account_problem("DU1234567\n", "paper") or "")


def test_check_account_id_masks_the_id() -> None:
    assert check_account_id("DU1234567", "paper") == "DU1234567"
    with pytest.raises(InputError, match=r"live account id DU\*\*\*4567 is not a live account: expected U followed"):
        check_account_id("DU1234567", "live")
