"""What a process that is not the engine needs of a session (the CLI's commands, the dashboards, services):
its lock (:class:`SessionLock`: one engine per session name and per account), whether it runs
(:func:`session_running`), its state read from the journal (:func:`session_status`), and the engine's error type
(:class:`EngineError`).

Light on purpose: it imports the journal and the types only, never ccxt, the feeds or the brokers (importing
:mod:`workbench.trading.engine` loads ccxt, about 0.4 s, into every dashboard kernel). The engine imports these
names from here, and they stay importable from :mod:`workbench.trading.engine`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from workbench.trading.journal import Journal, journal_path, session_dir
from workbench.types import OrderStatus

__all__ = [
    "EngineError",
    "SessionLock",
    "account_lock_path",
    "lock_path",
    "session_running",
    "session_status",
]


def lock_path(data_dir: str | Path, name: str) -> Path:
    """The lock file of session ``name``: ``<data>/trading/locks/session-<name>.lock``."""
    return Path(data_dir) / "trading" / "locks" / f"session-{name}.lock"


def account_lock_path(data_dir: str | Path, exchange: str, account: str) -> Path:
    """The lock file of an account: one session at a time trades it."""
    return Path(data_dir) / "trading" / "locks" / f"account-{exchange}-{account}.lock"


class EngineError(RuntimeError):
    """The session cannot start or go on (lock held, state not reconciled, bad spec); the message says why."""


class SessionLock:
    """An exclusive ``flock`` on a file, held for the session's life (a killed process frees it)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise EngineError(
                f"{self.what} is already running (pid {holder}); one session at a time"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid holding the lock, or None if nobody does."""
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                txt = os.pread(fd, 64, 0).decode(errors="replace").strip()
                return int(txt) if txt.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def session_status(data_dir: str | Path, name: str) -> dict[str, Any]:
    """A session's state read from its journal (no connection to the engine): for ``trade status``."""
    path = journal_path(data_dir, name)
    if not path.exists():
        raise EngineError(f"no session {name!r} under {session_dir(data_dir, name)}")
    j = Journal(path, readonly=True)
    try:
        export = j.export()
        states = j.read(kinds=["state"])
        last_state = states[-1].data if states else {}
        eq = export["equity"][-1]["equity"] if export["equity"] else None
        holder = SessionLock.holder(lock_path(data_dir, name))
        return {
            "session": name,
            "running": holder is not None,
            "pid": holder,
            "state": last_state.get("state"),
            "risk_state": last_state.get("risk"),
            "equity": eq,
            "positions": export["positions"],
            "open_orders": [
                o["client_order_id"] for o in export["orders"] if OrderStatus(o["status"]).is_open
            ],
            "orders": len(export["orders"]),
            "fills": len(export["fills"]),
            "last_seq": j.last_seq(),
            "spec": j.meta_get("spec"),
        }
    finally:
        j.close()


def session_running(data_dir: str | Path, name: str) -> bool:
    """Whether an engine holds the session's lock (a killed engine frees it)."""
    return SessionLock.holder(lock_path(data_dir, name)) is not None
