"""The audit key: a secret in a file kept apart from the data, that keys the audit chain.

Why: the hash chain (:mod:`ats.governance.audit`) proves that no row was changed *unless* someone
recomputes every hash from the changed row on — which anyone who can write to the database can
do.  Each row therefore also carries an HMAC-SHA256, under this key, of the store's id and the
row's hash.  Without the key a rewritten chain no longer verifies.

* **Where**: ``ATS_AUDIT_KEY_FILE``, default ``$XDG_CONFIG_HOME/ats/audit.key`` (that is
  ``~/.config/ats/audit.key``) — outside ``ATS_DATA_DIR`` on purpose: a copy of the data
  directory or database does not carry the key.  A key file inside ``ATS_DATA_DIR`` is refused.
* **Created** on first use: 32 random bytes as 64 hex digits, mode 0600 (its directory 0700),
  with one line on stderr saying so.  Written to a temporary file and hard-linked into place,
  so two processes starting at once end up with the same key.
* **Refused** with one line naming the variable (:class:`ats.core.errors.ConfigError`, exit 2):
  unreadable, not a regular file, not 64 hex digits, or readable by group/others (loose
  permissions: anyone who can read it can forge the log).  A lost key is never silently
  replaced: once a log is keyed, a missing key file is an error (:func:`key_for_append`).
* **Key id**: the first 32 hex digits of an HMAC of a fixed label — names a key without
  revealing it; the log records which key it is keyed with (``audit_head.key_id``).

For a team store (PostgreSQL shared by several machines) copy the same key file to each of
them, like any other secret; the first machine to append creates it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ats.core.errors import ConfigError

if TYPE_CHECKING:
    from ats.core.settings import Settings

KEY_VARIABLE = "ATS_AUDIT_KEY_FILE"
_KEY_ID_LABEL = b"ats-audit-key-id"
_HEX_DIGITS = 64

_cache: dict[Path, AuditKey] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class AuditKey:
    """A loaded audit key and the file it came from."""

    path: Path
    secret: bytes

    @property
    def key_id(self) -> str:
        """A name for this key that does not reveal it."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:32]

    def seal(self, store_id: str, digest: str) -> str:
        """The HMAC an audit row carries: over the store id and the row's hash."""
        return hmac.digest(self.secret, f"{store_id}:{digest}".encode("ascii"), "sha256").hex()

    def __repr__(self) -> str:  # never print the secret
        return f"AuditKey(path={str(self.path)!r}, key_id={self.key_id!r})"


def key_path(settings: Settings | None = None) -> Path:
    """The key file of ``settings`` (default: this process's settings)."""
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    return settings.audit.resolved_key_file


def load_key(path: Path | None = None, *, create: bool = False, settings: Settings | None = None) -> AuditKey | None:
    """The key in ``path`` (default from settings); ``None`` when the file does not exist and
    ``create`` is false.  Cached per path for the life of the process (a session keeps the key
    it started with).  Raises :class:`ConfigError` with one line for every unusable key file.
    """
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    path = Path(path) if path is not None else key_path(settings)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        _refuse_inside_data_dir(path, settings.data_dir)
        key = _read(path)
        if key is None:
            if not create:
                return None
            key = _create(path)
        _cache[path] = key
        return key


def key_for_append(keyed_with: str | None, settings: Settings | None = None) -> AuditKey:
    """The key to seal a new audit row with, for a log keyed with ``keyed_with`` (or not yet).

    Creates the key file only for a log that is not keyed yet: a missing key file for a keyed
    log means the key was lost or moved — starting a second key would split the log.
    """
    path = key_path(settings)
    key = load_key(path, create=keyed_with is None, settings=settings)
    if key is None:
        raise ConfigError(
            f"{KEY_VARIABLE}: {path} does not exist, but this audit log is keyed (key id {keyed_with}): "
            f"restore the key file, or point {KEY_VARIABLE} at it")
    if keyed_with is not None and key.key_id != keyed_with:
        raise ConfigError(
            f"{KEY_VARIABLE}: {path} holds another key (id {key.key_id}) than the one this audit log is "
            f"keyed with (id {keyed_with}): point {KEY_VARIABLE} at the right key file")
    return key


def forget_keys() -> None:
    """Forget every cached key (tests)."""
    with _cache_lock:
        _cache.clear()


def _refuse_inside_data_dir(path: Path, data_dir: Path) -> None:
    data = Path(data_dir).expanduser().resolve()
    if path.resolve().is_relative_to(data):
        raise ConfigError(
            f"{KEY_VARIABLE}: {path} is inside ATS_DATA_DIR ({data}): keep the audit key apart from the "
            f"data it protects (default ~/.config/ats/audit.key)")


def _read(path: Path) -> AuditKey | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{KEY_VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{KEY_VARIABLE}: {path} is not a file (expected the audit key file)")
    loose = info.st_mode & 0o077
    if loose:
        raise ConfigError(
            f"{KEY_VARIABLE}: {path} has loose permissions {stat.S_IMODE(info.st_mode):04o} (readable or "
            f"writable by others, who could forge the audit log): run chmod 600 {path}")
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII text"
        raise ConfigError(f"{KEY_VARIABLE}: cannot read {path}: {reason}") from None
    if len(text) != _HEX_DIGITS or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ConfigError(f"{KEY_VARIABLE}: {path} is not an ats audit key (expected {_HEX_DIGITS} hex digits)")
    return AuditKey(path, bytes.fromhex(text))


def _create(path: Path) -> AuditKey:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(_HEX_DIGITS // 2) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and refuses to replace a key another process just made
            created = True
        except FileExistsError:
            created = False
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"{KEY_VARIABLE}: cannot create {path}: {exc.strerror or exc}") from None
    key = _read(path)
    if key is None:  # pragma: no cover - removed between link and read
        raise ConfigError(f"{KEY_VARIABLE}: {path} vanished while it was being created")
    if created:
        print(f"ats: created the audit key {path} (mode 0600); keep it apart from the data and back it up — "
              f"without it the audit log cannot be verified or appended to", file=sys.stderr, flush=True)
    return key
