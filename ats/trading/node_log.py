"""The node's log file, written only through the account-id mask (``U1234567`` → ``U***4567``).

Why this exists: NautilusTrader writes its log file from its Rust logger, which has no hook to
rewrite a line, and the IB account id is in a large share of its INFO lines — every account
state the Portfolio logs (``account_id=INTERACTIVE_BROKERS-DU1234567``), every order and
position event a strategy logs, the execution client's "Account `DU1234567` found", the
execution engine's reconciliation reports.  Per-component log levels cannot keep it out
without dropping most of the log, and still let WARNING/ERROR lines through.

So the logger's "file" is a FIFO in a private temporary directory, and a small child process
(``python -m ats.trading.node_log OUT FIFO``, standard library only) copies what arrives to the real
file ``OUT`` under the log directory with every account id masked.  The full id never reaches
a file.  The child:

* reads until end of file, which comes only when every writer has closed — this process holds
  one write end for its whole life, so the child outlives the Rust logger's last line even
  when this process is killed (SIGKILL included) and then removes the FIFO;
* runs in its own session, so a Ctrl-C at the terminal does not cut the log short;
* holds an exclusive ``flock`` on ``OUT`` while it writes (a reader can wait for it to finish)
  and flushes and fsyncs after every chunk, as Nautilus does with its own file.

Nautilus starts its logger once per process (with the first node's configuration): one masked
file per process, shared by every later node in it.  The console (stdout/stderr, at the
session's console level, ERROR by default) is not filtered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from pathlib import Path

from ats.core.masking import mask_accounts_in

_CHUNK = 65_536
# A line longer than this is written in pieces, cut where no account id can be split.
_MAX_PENDING = 1 << 20

_lock = threading.Lock()
_target: tuple[Path, str, Path] | None = None  # (FIFO directory, file name without ".log", masked file)
_keep: list[int] = []  # the write end held open and the child's pid, for the life of this process


def masked_log_target(log_dir: Path, trader_id: str) -> tuple[Path, str, Path] | None:
    """Where Nautilus should write its file log so that it reaches ``log_dir`` masked.

    Returns ``(directory, file_name, masked_file)`` for Nautilus' ``LoggingConfig``
    (``log_directory``, ``log_file_name``; the logger appends ``.log``) and the real file, starting
    the filter on first use.  ``None`` when Nautilus' logger is already running in this process
    without our filter (its configuration is fixed by then: no file of ours would be written).
    """
    global _target
    from nautilus_trader.common.component import is_logging_initialized

    with _lock:
        if _target is not None:
            return _target
        if is_logging_initialized():
            return None
        _target = _start(Path(log_dir), trader_id)
        return _target


def _start(log_dir: Path, trader_id: str) -> tuple[Path, str, Path]:
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    name = f"{trader_id}_{stamp}_{uuid.uuid4().hex[:8]}"
    masked = log_dir / f"{name}.log"
    fifo_dir = Path(tempfile.mkdtemp(prefix="ats-node-log-"))  # 0700: only this user can open it
    fifo = fifo_dir / f"{name}.log"
    os.mkfifo(fifo, 0o600)
    # Open the read end first (non-blocking: no writer yet), then our own write end (which
    # cannot block now that a reader exists).  The child sees end of file only once this
    # write end and the logger's are both closed, i.e. when this process has ended.
    read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_end = os.open(fifo, os.O_WRONLY)
        os.set_blocking(read_end, True)
        # Spawned, not a Popen: the child outlives this process by design, and a Popen left
        # running is reported as a leak (ResourceWarning) when the interpreter ends.
        child = os.posix_spawn(
            sys.executable, [sys.executable, "-m", "ats.trading.node_log", str(masked), str(fifo)], os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0),
                          (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
            setsid=True,
        )
    except BaseException:
        shutil.rmtree(fifo_dir, ignore_errors=True)
        raise
    finally:
        os.close(read_end)
    _keep.extend([write_end, child])
    return fifo_dir, name, masked


def _cut(pending: bytes) -> int:
    """How many bytes of ``pending`` can be masked and written now without splitting an account id."""
    end = pending.rfind(b"\n") + 1
    if end or len(pending) <= _MAX_PENDING:
        return end
    for index in range(len(pending) - 1, -1, -1):
        if not chr(pending[index]).isalnum():
            return index + 1
    return len(pending)  # one megabyte without a separator: not an account id's neighbourhood


def _mask(data: bytes) -> bytes:
    return mask_accounts_in(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def pump(source_fd: int, out_path: Path) -> None:
    """Copy ``source_fd`` to ``out_path`` (appending) with account ids masked, until end of file."""
    with open(out_path, "ab") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        pending = b""
        while chunk := os.read(source_fd, _CHUNK):
            pending += chunk
            cut = _cut(pending)
            if cut:
                out.write(_mask(pending[:cut]))
                out.flush()
                os.fsync(out.fileno())
                pending = pending[cut:]
        if pending:
            out.write(_mask(pending))
        out.flush()
        os.fsync(out.fileno())


def main(argv: list[str]) -> int:
    """``python -m ats.trading.node_log OUT FIFO``: filter stdin (the FIFO's read end) into OUT, then remove FIFO."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # end only at end of file: never lose the tail
    out_path, fifo = Path(argv[0]), Path(argv[1])
    try:
        pump(sys.stdin.fileno(), out_path)
    finally:
        with contextlib.suppress(OSError):
            fifo.unlink()
            fifo.parent.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
