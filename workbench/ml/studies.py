"""Optuna storages that several workers may open at once: the schema of a fresh SQLite file created under a
lock (processes opening it together otherwise race on CREATE TABLE), heartbeats, and stale trials failed and
retried. Used by the strategy optimiser (:mod:`workbench.backtest.optimize`), model tuning
(:mod:`workbench.ml.tune`) and the scale-out helpers (:mod:`workbench.scale`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["HEARTBEAT_S", "open_storage"]

HEARTBEAT_S = 10  # a live worker's trials beat this often; one silent for 2x this long is stale


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """For a SQLite file: an flock on ``<file>.lock`` around schema creation (processes opening a fresh file
    together otherwise race on CREATE TABLE); nothing for other databases."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        yield
        return
    path = Path(u.database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = HEARTBEAT_S,
    grace_period: int | None = None,
    retries: int = 5,
) -> Any:
    """An Optuna ``RDBStorage`` for ``url``, its schema created safely when several workers open a fresh
    storage at once, with heartbeats (``heartbeat_interval`` seconds; None: off) and stale trials (silent for
    ``grace_period``, default twice the interval) failed and retried once."""
    import optuna
    import sqlalchemy.exc

    sqlite = url.startswith("sqlite")
    kw: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if sqlite else {}
    for attempt in range(retries + 1):
        try:
            with _creation_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if heartbeat_interval is not None:
                    # Optuna >= 4.9 renamed the callback and its argument
                    new = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
                    retry = new or optuna.storages.RetryFailedTrialCallback
                    kw.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period)
                    kw["heartbeat_stale_trial_callback" if new else "failed_trial_callback"] = retry(
                        max_retry=1
                    )
                return optuna.storages.RDBStorage(url, **kw)
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
        ):
            # another worker is creating the same schema on a server database: wait and read what it made
            if attempt == retries:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")
