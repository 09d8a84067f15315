"""The node-log filter: whatever the logger writes reaches the file with account ids masked."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ats.core.masking import mask_accounts_in
from ats.trading.node_log import pump


def _pumped(tmp_path: Path, *writes: bytes) -> bytes:
    """Run the filter on a real pipe fed with ``writes`` (one ``write`` each), return the file."""
    read_end, write_end = os.pipe()
    out = tmp_path / "node.log"

    def feed() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as pipe:
            for data in writes:
                pipe.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        pump(read_end, out)
    finally:
        writer.join()
        os.close(read_end)
    return out.read_bytes()


def test_account_ids_are_masked_wherever_nautilus_puts_them() -> None:
    line = ("Account `DU1234567` found; AccountState(account_id=INTERACTIVE_BROKERS-U7654321, ...); "
            "managed accounts DF1112223,F4445556")

    assert mask_accounts_in(line) == ("Account `DU***4567` found; AccountState(account_id=INTERACTIVE_BROKERS-U***4321, "
                                      "...); managed accounts DF***2223,F***5556")


def test_an_account_id_split_across_writes_is_masked(tmp_path: Path) -> None:
    written = _pumped(tmp_path, b"first line\nOrderFilled(account_id=INTERACTIVE_BROKERS-DU12", b"34567, qty=20)\n")

    assert written == b"first line\nOrderFilled(account_id=INTERACTIVE_BROKERS-DU***4567, qty=20)\n"


def test_a_last_line_without_newline_is_written_masked(tmp_path: Path) -> None:
    assert _pumped(tmp_path, b"stopped U1234567") == b"stopped U***4567"


def test_a_line_longer_than_the_buffer_is_cut_where_no_id_can_be_split(tmp_path: Path) -> None:
    filler = b"ab " * 700_000  # 2.1 MB without a newline

    written = _pumped(tmp_path, filler + b"DU12", b"34567" + filler + b"\n")

    assert b"DU1234567" not in written and written.count(b"DU***4567") == 1
    assert len(written) == 2 * len(filler) + len(b"DU***4567\n")


def test_bytes_that_are_not_utf8_pass_through_unchanged(tmp_path: Path) -> None:
    assert _pumped(tmp_path, b"\xff\xfe U1234567 \xc3\n") == b"\xff\xfe U***4567 \xc3\n"
