"""The keyed, anchored audit chain (issue 17, finding 4): a rewrite from a row on or a truncation
with the head moved back is found; the key file is created 0600 and refused when unusable;
rows from before keying are verified by hash only."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from ats.core.alert_sink import AlertEndpoint
from ats.core.errors import AuditChainBroken, ConfigError
from ats.governance import audit
from ats.store import open_store
from ats.store.engine import MIGRATIONS_DIR
from support import run_ats
from tamper_support import rewrite_from, triggers_off, truncate_to


def _fill(store, n: int) -> None:  # noqa: ANN001
    for i in range(n):
        audit.append("tester@host", "test.action", f"subject-{i}", {"i": i}, store=store)


def _key_file(isolated_env: Path) -> Path:
    return isolated_env.parent / "ats-config" / "audit.key"


# --- the keyed chain ---------------------------------------------------------------------------

TAMPERINGS = {
    # row 3 rewritten, every hash after it and the head recomputed — all one can do without the key
    "rewrite": (lambda store: rewrite_from(store, 3),
                "error: audit chain broken at seq 3: HMAC does not match: the row was written or rewritten "
                "without the audit key"),
    # rows 5..7 deleted and audit_head moved back to row 4: internally a perfect chain
    "truncate": (lambda store: truncate_to(store, 4),
                 "error: audit chain broken at seq 7: audit log truncated: anchored head seq 7 "),
}


@pytest.mark.parametrize("kind", sorted(TAMPERINGS))
def test_a_rewrite_or_truncation_around_the_triggers_is_found_by_verify(store_url: str, kind: str) -> None:
    # Arrange
    tamper, expected = TAMPERINGS[kind]
    store = open_store(store_url)
    _fill(store, 7)
    tamper(store)

    # Act
    result = run_ats("audit", "verify", env={"ATS_DATABASE_URL": store_url})

    # Assert
    assert result.returncode == 4
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(expected)
    assert kind != "truncate" or line.endswith("is missing (the log ends at seq 4)")


def test_every_row_carries_the_hmac_of_its_hash_under_the_key(sqlite_url: str) -> None:
    store = open_store(sqlite_url)

    _fill(store, 3)

    from ats.governance.audit_key import load_key

    key = load_key()
    with store.read() as conn:
        store_id = conn.execute(text("SELECT store_id FROM audit_head")).scalar()
    rows = audit.list_rows(store=store)
    assert [r.hmac for r in rows] == [key.seal(store_id, r.hash) for r in rows]
    assert audit.verify(store).keyed_rows == 3


def test_unkeying_the_log_and_recomputing_it_is_found_through_the_anchor(sqlite_url: str) -> None:
    # Arrange: every HMAC removed, keyed_from moved to just past the end (as if the keying
    # migration had just run), every hash recomputed.
    store = open_store(sqlite_url)
    _fill(store, 5)
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("UPDATE audit_log SET hmac = NULL"))
        conn.execute(text("UPDATE audit_head SET keyed_from = 6, key_id = NULL"))
    rewrite_from(store, 2)

    # Act
    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    # Assert
    assert excinfo.value.seq == 5
    assert "the row differs from the anchored head seq 5" in excinfo.value.reason


def test_unkeying_the_log_under_a_new_store_id_is_found_through_the_anchor_file(store_url: str) -> None:
    # Arrange: an approval-like row rewritten, every HMAC removed, keyed_from moved to just past
    # the end and a fresh store id, so that the anchor filed under the old id is not looked up.
    store = open_store(store_url)
    _fill(store, 5)
    with store.read() as conn:
        old_id = conn.execute(text("SELECT store_id FROM audit_head")).scalar()
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("UPDATE audit_log SET hmac = NULL"))
        conn.execute(text("UPDATE audit_head SET keyed_from = 6, key_id = NULL, store_id = :s"), {"s": "f" * 32})
    rewrite_from(store, 2)

    # Act
    result = run_ats("audit", "verify", env={"ATS_DATABASE_URL": store_url})

    # Assert
    assert result.returncode == 4
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: audit chain broken at seq 5: the anchor file (")
    assert f"holds this database's head (seq 5) under store id {old_id}, and audit_head says store id {'f' * 32}" in line


def test_keying_moved_past_the_end_of_the_log_is_found(sqlite_url: str) -> None:
    # Arrange: the helper's form of the attack above — keyed_from far past the end.
    store = open_store(sqlite_url)
    _fill(store, 3)
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("UPDATE audit_log SET hmac = NULL"))
        conn.execute(text("UPDATE audit_head SET keyed_from = 100"))

    # Act
    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    # Assert
    assert excinfo.value.seq == 4
    assert excinfo.value.reason == ("audit_head says the log is keyed from seq 100, past its end (seq 3): "
                                    "audit_head was edited")


def test_keyed_rows_relabelled_as_before_keying_are_found(sqlite_url: str) -> None:
    # Arrange: keyed_from moved to just past the end, the HMACs left in place.
    store = open_store(sqlite_url)
    _fill(store, 3)
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("UPDATE audit_head SET keyed_from = 4"))

    # Act
    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    # Assert
    assert (excinfo.value.seq, excinfo.value.reason) == (
        1, "row carries an HMAC but the log says rows are keyed only from seq 4: audit_head was edited")


def test_verify_reports_keyed_rows_and_the_anchor(sqlite_url: str) -> None:
    _fill(open_store(sqlite_url), 3)

    result = run_ats("audit", "verify", "--json", env={"ATS_DATABASE_URL": sqlite_url})

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["ok"], data["rows"], data["keyed_rows"], data["rows_before_keying"]) == (True, 3, 3, 0)
    assert data["anchor"]["seq"] == 3 and data["anchor"]["hash"] == data["head_hash"]


# --- rows from before keying ---------------------------------------------------------------------

def _legacy_store(url: str, rows: int):  # noqa: ANN202
    """A store migrated to 0004 (before keying) holding ``rows`` audit rows, then upgraded."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, make_url

    database = make_url(url).database
    if url.startswith("sqlite"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        prev = audit.GENESIS_HASH
        for seq in range(1, rows + 1):
            ts, payload = f"2026-01-0{seq}T00:00:00.000000Z", json.dumps({"i": seq})
            digest = audit.row_hash(seq, ts, "old@host", "test.legacy", "s", payload, prev)
            conn.execute(text("INSERT INTO audit_log (seq, ts, actor, action, subject, payload, prev_hash, hash) "
                              "VALUES (:s, :t, 'old@host', 'test.legacy', 's', :p, :prev, :h)"),
                         {"s": seq, "t": ts, "p": payload, "prev": prev, "h": digest})
            prev = digest
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": rows, "h": prev})
    engine.dispose()
    return open_store(url)  # migrates to head: the keying starts after the legacy rows


def test_rows_before_keying_are_verified_by_hash_and_reported(store_url: str) -> None:
    store = _legacy_store(store_url, 3)

    audit.append("new@host", "test.keyed", "s", {"n": 1}, store=store)
    result = run_ats("audit", "verify", env={"ATS_DATABASE_URL": store_url})

    assert result.returncode == 0, result.stderr
    assert "4 rows" in result.stdout and "1 keyed, 3 rows before keying (hash only)" in result.stdout
    assert [r.hmac is None for r in audit.list_rows(store=store)] == [True, True, True, False]


def test_a_row_before_keying_is_still_checked_by_its_hash(sqlite_url: str) -> None:
    store = _legacy_store(sqlite_url, 3)
    audit.append("new@host", "test.keyed", "s", store=store)
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))

    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    assert (excinfo.value.seq, excinfo.value.reason) == (2, "hash does not match the row's content")


def test_a_row_without_hmac_after_keying_is_found(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 3)
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("UPDATE audit_log SET hmac = NULL WHERE seq = 2"))

    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    assert (excinfo.value.seq, excinfo.value.reason) == (2, "row has no HMAC (every row from seq 1 on is keyed)")


# --- the key file --------------------------------------------------------------------------------

def test_the_key_is_created_0600_on_first_use_with_one_line(isolated_env: Path) -> None:
    key = _key_file(isolated_env)
    key.unlink()  # a machine that never used ats

    result = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok")

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) == 64
    assert result.stderr.strip().splitlines() == [
        f"ats: created the audit key {key} (mode 0600); keep it apart from the data and back it up — without it "
        f"the audit log cannot be verified or appended to"]
    assert key.read_text() not in result.stdout + result.stderr


def test_a_key_file_with_loose_permissions_is_refused_with_one_line(isolated_env: Path) -> None:
    key = _key_file(isolated_env)
    _fill(open_store(), 1)
    key.chmod(0o644)

    approve = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok")
    verify = run_ats("audit", "verify")

    for result in (approve, verify):
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"error: ATS_AUDIT_KEY_FILE: {key} has loose permissions 0644 (readable or writable by others, who "
            f"could forge the audit log): run chmod 600 {key}"]
    assert audit.count(open_store()) == 1  # nothing written


def test_an_unreadable_key_file_is_refused_with_one_line(isolated_env: Path) -> None:
    key = _key_file(isolated_env)
    key.unlink()
    key.mkdir()  # a directory where the key should be: unreadable as a key

    result = run_ats("audit", "list")
    approve = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok")

    assert result.returncode == 0  # reading the log needs no key
    assert approve.returncode == 2
    assert approve.stderr.strip().splitlines() == [
        f"error: ATS_AUDIT_KEY_FILE: {key} is not a file (expected the audit key file)"]


def test_a_key_file_inside_the_data_dir_is_refused(isolated_env: Path) -> None:
    inside = isolated_env / "audit.key"

    result = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok",
                     env={"ATS_AUDIT_KEY_FILE": str(inside)})

    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: ATS_AUDIT_KEY_FILE: {inside} is inside ATS_DATA_DIR")
    assert not inside.exists()


def test_a_lost_key_is_not_silently_replaced(isolated_env: Path) -> None:
    key = _key_file(isolated_env)
    _fill(open_store(), 2)
    key.unlink()

    append = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok")
    verify = run_ats("audit", "verify")

    assert append.returncode == 2
    assert append.stderr.strip().startswith(f"error: ATS_AUDIT_KEY_FILE: {key} does not exist, but this audit log "
                                            f"is keyed")
    assert verify.returncode == 2 and "cannot be verified without its key" in verify.stderr
    assert not key.exists()


def test_another_key_is_refused_for_a_keyed_log(isolated_env: Path, tmp_path: Path) -> None:
    _fill(open_store(), 1)
    other = tmp_path / "other" / "audit.key"
    other.parent.mkdir()
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"ab" * 32)
    os.close(fd)

    result = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok",
                     env={"ATS_AUDIT_KEY_FILE": str(other)})

    assert result.returncode == 2
    assert "holds another key" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_load_key_raises_config_error_for_a_malformed_key(tmp_path: Path) -> None:
    from ats.governance.audit_key import load_key

    path = tmp_path / "audit.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key\n")
    os.close(fd)

    with pytest.raises(ConfigError, match="is not an ats audit key \\(expected 64 hex digits\\)"):
        load_key(path)


# --- the anchor ----------------------------------------------------------------------------------

def test_the_anchor_file_follows_every_append(isolated_env: Path, sqlite_url: str) -> None:
    store = open_store(sqlite_url)

    _fill(store, 4)

    anchor_file = isolated_env.parent / "ats-config" / "audit.anchor.json"
    [entry] = json.loads(anchor_file.read_text())["stores"].values()
    head = audit.list_rows(store=store)[-1]
    assert (entry["seq"], entry["hash"], entry["hmac"]) == (4, head.hash, head.hmac)
    assert stat.S_IMODE(anchor_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("problem", ["malformed", "under a file"])
def test_an_unusable_anchor_file_refuses_the_change_before_it_is_made(isolated_env: Path, problem: str) -> None:
    # Arrange: an anchor file that is not one, or a path whose directory is a regular file.
    if problem == "malformed":
        anchor = isolated_env.parent / "broken.anchor.json"
        anchor.write_text("{not json")
        expected = f"error: ATS_AUDIT_ANCHOR_FILE: {anchor} is not an ats audit anchor file"
    else:
        blocker = isolated_env.parent / "a-file"
        blocker.write_text("x")
        anchor = blocker / "audit.anchor.json"
        expected = f"error: ATS_AUDIT_ANCHOR_FILE: cannot read {anchor}: Not a directory"
    env = {"ATS_AUDIT_ANCHOR_FILE": str(anchor)}

    # Act
    result = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok",
                     env=env)

    # Assert: one line, and the approval was not recorded (told "refused", it is not in effect).
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(expected)
    assert audit.count(open_store()) == 0
    from ats.governance import approvals

    assert approvals.current_approvals(store=open_store()) == []


def test_an_anchor_file_broken_between_appends_of_one_process_refuses_the_next(isolated_env: Path,
                                                                               sqlite_url: str) -> None:
    # Arrange: appends that wrote and checked the anchor file, then the file overwritten.
    store = open_store(sqlite_url)
    _fill(store, 2)
    anchor_file = Path(os.environ["ATS_AUDIT_ANCHOR_FILE"])
    anchor_file.write_text("{not json")

    # Act / Assert: the next append is refused before it is made.
    with pytest.raises(ConfigError, match="is not an ats audit anchor file"), store.write() as conn:
        audit.append_in(conn, "a", "test.after_break", "s")
    assert audit.count(store) == 2


def test_an_anchor_file_replaced_just_after_an_append_wrote_it_refuses_the_next(
        isolated_env: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the anchor file replaced by another program (not an ats writer, no lock) in the
    # instant after an append's anchor write renamed its own file into place.
    from ats.governance import audit_anchor

    store = open_store(sqlite_url)
    _fill(store, 1)
    anchor_file = Path(os.environ["ATS_AUDIT_ANCHOR_FILE"])
    real_replace = os.replace

    def replace_then_overwritten(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        broken = anchor_file.with_name("broken.json")
        broken.write_text("{not json")
        real_replace(broken, anchor_file)

    monkeypatch.setattr(audit_anchor.os, "replace", replace_then_overwritten)
    audit.append("a", "test.before_break", "s", store=store)
    monkeypatch.setattr(audit_anchor.os, "replace", real_replace)

    # Act / Assert: the next append is refused before it is made.
    with pytest.raises(ConfigError, match="is not an ats audit anchor file"), store.write() as conn:
        audit.append_in(conn, "a", "test.after_break", "s")
    assert audit.count(store) == 2


def test_an_anchor_file_with_a_malformed_entry_refuses_the_change_before_it_is_made(
        isolated_env: Path, sqlite_url: str) -> None:
    # Arrange: the store's entry in the anchor file is not an entry (hand-edited, half restored).
    store = open_store(sqlite_url)
    _fill(store, 1)
    anchor_file = Path(os.environ["ATS_AUDIT_ANCHOR_FILE"])
    data = json.loads(anchor_file.read_text())
    (store_id,) = data["stores"]
    data["stores"][store_id] = 5
    anchor_file.write_text(json.dumps(data))

    # Act / Assert: refused before the transaction commits, not failing after it.
    with pytest.raises(ConfigError, match="malformed"), store.write() as conn:
        audit.append_in(conn, "a", "test.after_break", "s")
    assert audit.count(store) == 1


def test_a_rolled_back_append_does_not_move_the_anchor(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 2)

    with pytest.raises(RuntimeError), store.write() as conn:
        audit.append_in(conn, "a", "test.rolled_back", "s")
        raise RuntimeError("the caller's change failed")

    assert audit.verify(store).anchor.seq == 2


def test_audit_anchor_publishes_the_head_through_apprise(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 3)
    endpoint = AlertEndpoint()
    try:
        result = run_ats("audit", "anchor", env={"ATS_DATABASE_URL": sqlite_url, "ATS_ALERT_URLS": endpoint.url})
        posts = list(endpoint.posts)
    finally:
        endpoint.close()

    head = audit.list_rows(store=store)[-1]
    assert result.returncode == 0, result.stderr
    assert "anchored audit head seq 3" in result.stdout and "sent through apprise" in result.stdout
    [post] = posts
    assert post["title"] == "ats: audit head seq 3"
    assert f"ats audit verify --anchor 3:{head.hash}" in post["message"]


def test_verify_checks_a_published_head(store_url: str) -> None:
    # Arrange: a head published off the machine, then the log truncated and the anchor file lost.
    store = open_store(store_url)
    _fill(store, 5)
    published = f"5:{audit.list_rows(store=store)[-1].hash}"
    truncate_to(store, 3)
    Path(os.environ["ATS_AUDIT_ANCHOR_FILE"]).unlink()
    env = {"ATS_DATABASE_URL": store_url}

    # Act
    without = run_ats("audit", "verify", env=env)
    checked = run_ats("audit", "verify", "--anchor", published, env=env)

    # Assert
    assert without.returncode == 0 and "no anchor for this store" in without.stdout
    assert checked.returncode == 4
    assert "audit log truncated: published head seq 5 is missing (the log ends at seq 3)" in checked.stderr


def test_verify_anchor_option_refuses_a_malformed_value(sqlite_url: str) -> None:
    result = run_ats("audit", "verify", "--anchor", "12-abc", env={"ATS_DATABASE_URL": sqlite_url})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --anchor '12-abc': expected SEQ:HASH as published by `ats audit anchor`, e.g. 120:3f9a…"]


def test_audit_anchor_deployment_is_served_hourly() -> None:
    from ats.core.settings import load_settings
    from deployments import build_deployments

    [deployment] = [d for d in build_deployments(load_settings({})) if d.name == "audit-anchor"]

    assert deployment.schedules[0].schedule.cron == "0 * * * *"
    assert deployment.concurrency_limit == 1
