"""The audit head anchored outside the database.

Why: the hash chain and its ``audit_head`` row live in the same database.  Someone who deletes
the newest rows *and* moves ``audit_head`` back leaves a shorter chain that is internally
perfect.  So the head — (seq, hash, HMAC) — is also kept where a database edit cannot reach:

* **the anchor file** (``ATS_AUDIT_ANCHOR_FILE``, default ``audit.anchor.json`` beside the key
  file), rewritten after every commit that appended audit rows (:func:`record`, called by
  :meth:`ats.store.Store.write`).  One JSON file holds the heads of every store this machine
  writes to, filed under each store's random ``store_id``; a head only ever moves forward.
  Writes are serialised by an ``flock`` on ``<file>.lock`` and atomic (temporary file, rename);
* **a scheduled publication** (:func:`publish`, ``ats audit anchor``, the ``audit-anchor`` flow):
  the head sent through apprise (``ATS_ALERT_URLS``) to somewhere off this machine, and written
  to the file.  A published head can be checked later with ``ats audit verify --anchor SEQ:HASH``.

:func:`ats.governance.audit.verify` checks that the database still holds the anchored row with the same
hash and HMAC: a truncation is reported as "audit log truncated: anchored head seq N is
missing", a rewrite as the anchored row differing.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ats.core.errors import ConfigError

if TYPE_CHECKING:
    from ats.core.settings import Settings
    from ats.store import Store

ANCHOR_VARIABLE = "ATS_AUDIT_ANCHOR_FILE"
_VERSION = 1


@dataclass(frozen=True)
class Anchor:
    """The head of one store's audit log as anchored outside the database."""

    store_id: str
    seq: int
    hash: str
    hmac: str | None
    keyed_from: int | None
    at: str
    store: str = ""  # the store's URL without password, for the human reading the file

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def anchor_path(settings: Settings | None = None) -> Path:
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    return settings.audit.resolved_anchor_file


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": _VERSION, "stores": {}}
    except OSError as exc:
        raise ConfigError(f"{ANCHOR_VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("stores"), dict):
            raise ValueError("no 'stores' object")
    except ValueError as exc:
        raise ConfigError(f"{ANCHOR_VARIABLE}: {path} is not an ats audit anchor file ({exc})") from None
    return data


def _anchor_of(store_id: str, entry: object, path: Path) -> Anchor:
    if not isinstance(entry, dict):
        raise ConfigError(f"{ANCHOR_VARIABLE}: {path}: the entry of store {store_id} is malformed")
    try:
        return Anchor(store_id=store_id, seq=int(entry["seq"]), hash=str(entry["hash"]),
                      hmac=entry.get("hmac"), keyed_from=entry.get("keyed_from"), at=str(entry.get("at", "")),
                      store=str(entry.get("store", "")))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{ANCHOR_VARIABLE}: {path}: the entry of store {store_id} is malformed") from None


def read_anchor(store_id: str, path: Path | None = None) -> Anchor | None:
    """The anchored head of store ``store_id``, or ``None`` when this file never anchored it."""
    path = path or anchor_path()
    entry = _load(path)["stores"].get(store_id)
    return None if entry is None else _anchor_of(store_id, entry, path)


def anchors_of_store(label: str, path: Path | None = None) -> list[Anchor]:
    """Every head the file anchors for the database ``label`` (its URL without password), under
    whatever store id; normally one."""
    path = path or anchor_path()
    stores = _load(path)["stores"]
    return [_anchor_of(store_id, entry, path) for store_id, entry in stores.items()
            if isinstance(entry, dict) and entry.get("store") == label]


_PARSED: dict[Path, tuple[int, ...]] = {}  # anchor files that parsed, by (device, inode, size, mtime, ctime)


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def check_writable(path: Path) -> None:
    """Raise :class:`ConfigError` unless :func:`record` can write ``path``: an append checks this
    *before* its transaction commits, so a bad anchor file refuses the change instead of
    reporting an error about a change already made.

    Every audit append calls this, so the file is parsed only when it is not the one that last
    parsed or that :func:`record` last wrote (device, inode, size, modification and change
    times); :func:`record` parses it again under its lock anyway.
    """
    try:
        identity = _identity(path)
    except OSError as exc:
        raise ConfigError(f"{ANCHOR_VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    if identity is None or _PARSED.get(path) != identity:
        # Readable, an anchor file (or not there yet), and every entry one record() can compare with.
        for store_id, entry in _load(path)["stores"].items():
            _anchor_of(store_id, entry, path)
        if identity is not None:
            _PARSED[path] = identity
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{ANCHOR_VARIABLE}: cannot create the directory of {path}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{ANCHOR_VARIABLE}: cannot write {path}: permission denied")


def record(anchor: Anchor, path: Path | None = None) -> bool:
    """Write ``anchor`` unless the file already holds a head at least as far; True if written.

    Called after each commit that appended audit rows.  Commits of one store are serialised by
    the database, but their anchor writes are not: a slower writer must not move the head back.
    """
    path = path or anchor_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _load(path)
            current = data["stores"].get(anchor.store_id)
            if current is not None and _anchor_of(anchor.store_id, current, path).seq >= anchor.seq:
                return False
            entry = anchor.as_dict()
            del entry["store_id"]
            data["stores"][anchor.store_id] = entry
            data["version"] = _VERSION
            text = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                handle.write(text)
                handle.flush()
                ours = os.fstat(handle.fileno())
            try:
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            # Known good only if the file now at ``path`` is the one just written: another program
            # (not an ats writer, so not under the lock) may have replaced it since the rename.
            written = _identity(path)
            if written is not None and written[:3] == (ours.st_dev, ours.st_ino, ours.st_size):
                _PARSED[path] = written
            else:
                _PARSED.pop(path, None)
            return True
        finally:
            os.close(lock)  # releases the lock
    except OSError as exc:
        raise ConfigError(f"{ANCHOR_VARIABLE}: cannot write {path}: {exc.strerror or exc}") from None


def publish(*, store: Store | None = None, settings: Settings | None = None,
            send: bool = True) -> tuple[Anchor, bool | None]:
    """Publish the current head: to the anchor file and (``send``) through apprise.

    Returns the anchor and whether every apprise target accepted it (``None`` when no
    ``ATS_ALERT_URLS`` is configured: the file is then the only anchor).
    """
    from ats.core import alerts
    from ats.governance import audit
    from ats.store import open_store

    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    store = store or open_store(settings.resolved_database_url)
    anchor = audit.current_anchor(store)
    record(anchor, anchor_path(settings))
    delivered: bool | None = None
    if send and settings.alert_url_list:
        body = "\n".join([
            f"Store: {anchor.store_id}", f"Head: seq {anchor.seq}", f"Hash: {anchor.hash}",
            f"HMAC: {anchor.hmac or '(none)'}", f"At: {anchor.at}",
            f"Check later with: ats audit verify --anchor {anchor.seq}:{anchor.hash}",
        ])
        delivered = alerts.send(f"ats: audit head seq {anchor.seq}", body, "info")
    return anchor, delivered
