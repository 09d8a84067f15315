"""The kill switch's fast path: a local datagram socket per running session.

Standard library only: ``ats kill`` sends its message before it imports the store (SQLAlchemy,
pydantic: about a second of imports on a loaded machine), so a running session halts within
milliseconds of the keystroke; the latch row written right after stays the source of truth,
and the session's 50 ms poll of the store the fallback (a session on another host, a message
lost).

Each running session binds ``<socket dir>/<store key>-<mode>-<session id>.sock``:

* the socket directory is ``$XDG_RUNTIME_DIR/ats`` or ``/tmp/ats-<uid>``, created 0700 and
  refused when another user owns it or it is open to others (only this user's processes can
  send);
* the store key is the first 12 hex digits of the SHA-256 of the session's store URL, so
  ``ats kill`` reaches only the sessions of its own store (another data directory's sessions
  on the same machine are not touched).

Messages are one JSON object: ``{"kind": "kill", "modes": [...], "session": ID|null,
"reason": ..., "actor": ...}`` (halt now) or ``{"kind": "wake"}`` (read the kill switch in
the store now; sent after every latch).  A session acts on a ``kill`` addressed to its mode or
its id; a message is never a way to *start* anything, so the worst a forged one can do is halt
a session of this user.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_MESSAGE_BYTES = 4096
_SUFFIX = ".sock"


class SocketDirError(OSError):
    """The socket directory is unsafe (another owner, open to others) or cannot be made."""


def socket_dir() -> Path:
    """The directory of the session sockets (created 0700 on first use)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "ats" if runtime and Path(runtime).is_dir() else \
        Path(tempfile.gettempdir()) / f"ats-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SocketDirError(f"{base} is not a private directory of this user (mode {oct(info.st_mode & 0o777)})")
    return base


def store_key(database_url: str) -> str:
    """Which store a session belongs to, without the URL (it may carry a password)."""
    return hashlib.sha256(database_url.encode("utf-8")).hexdigest()[:12]


def socket_path(key: str, mode: str, session_id: str) -> Path:
    return socket_dir() / f"{key}-{mode}-{session_id}{_SUFFIX}"


def _targets(key: str, modes: Iterable[str], session: str | None) -> list[Path]:
    try:
        directory = socket_dir()
    except OSError:
        return []
    found = []
    for mode in modes:
        prefix = f"{key}-{mode}-{session or ''}"
        found += [p for p in directory.glob(f"{key}-{mode}-*{_SUFFIX}") if p.name.startswith(prefix)]
    return found


def send(key: str, modes: Iterable[str], message: dict[str, Any], session: str | None = None) -> int:
    """Send ``message`` to every session socket of this store in ``modes`` (or the one session
    whose id starts with ``session``).  Returns how many sessions it reached; never raises."""
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")[:MAX_MESSAGE_BYTES]
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in _targets(key, list(modes), session):
            try:
                sock.sendto(payload, str(path))
                reached += 1
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):  # nobody bound: a session that died (SIGKILL)
                    path.unlink()
            except OSError:
                continue  # a full queue or a vanished file: the poll of the store still works
    return reached


class Listener:
    """A session's socket: ``receive(timeout)`` returns the next message (a dict) or None."""

    def __init__(self, key: str, mode: str, session_id: str) -> None:
        self.path = socket_path(key, mode, session_id)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def receive(self, timeout: float) -> dict[str, Any] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(MAX_MESSAGE_BYTES)
        except (TimeoutError, OSError):
            return None
        try:
            message = json.loads(data.decode("utf-8"))
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def addressed_to(message: dict[str, Any], mode: str, session_id: str) -> bool:
    """Is a ``kill`` message for this session (its mode, or its id by prefix)?"""
    session = message.get("session")
    if session:
        return isinstance(session, str) and session_id.startswith(session)
    modes = message.get("modes")
    return isinstance(modes, list) and mode in modes


# --- the fast path of `ats kill`: the store key from the environment, stdlib only ------------

def _dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``.env`` (``export`` prefix, quotes stripped), keys upper-cased."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip().upper()] = value
    return values


def key_from_environment(env: dict[str, str] | None = None, dotenv: Path = Path(".env")) -> str:
    """The store key ``ats kill`` would resolve, read the way the settings read it (the
    environment wins over ``.env``) without loading them.  Should the two ever disagree, the
    fast message reaches no session and the latch (read with the full settings) still halts."""
    env = {k.upper(): v for k, v in (os.environ if env is None else env).items()}
    values = {**_dotenv(dotenv), **{k: v for k, v in env.items() if k.startswith("ATS_")}}
    url = values.get("ATS_DATABASE_URL")
    if not url:
        data_dir = Path(values.get("ATS_DATA_DIR") or "./.ats")
        url = f"sqlite:///{(data_dir / 'ats.sqlite3').resolve()}"
    return store_key(url)


def operator_from_environment(env: dict[str, str] | None = None, dotenv: Path = Path(".env")) -> str:
    """``ATS_OPERATOR`` (environment, then ``.env``), else ``user@host`` — for the halt's reason."""
    env = {k.upper(): v for k, v in (os.environ if env is None else env).items()}
    found = env.get("ATS_OPERATOR") or _dotenv(dotenv).get("ATS_OPERATOR")
    if not found:
        import pwd

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = env.get("USER") or "unknown"
        found = f"{user}@{socket.gethostname()}"
    return found[:200]
