"""Stored results: every ``workbench backtest`` and ``workbench sweep`` keeps its result under
``<data>/backtests/<id>/``, where ``workbench backtests ls|show|rm`` (and the dashboards' Backtests page) find it.

Layout of one result folder::

    <data>/backtests/20261201T094512123456Z-sma_cross-3fa2/
        result.json     # {"schema_version", "id", "kind": "backtest"|"sweep", "created", "command", "summary",
                        #  ...payload}
        report.html     # the HTML report (backtest) or the heatmap report (sweep)

``<id>`` is ``<UTC time to the microsecond>Z-<strategy>-<4 hex>``: ids sort by creation time as text, and two
results written in the same microsecond still differ. ``summary`` holds what ``ls`` shows (strategy, symbols,
timeframe, period, headline metrics) so that listing does not read the equity curves. A result is written
into a hidden ``.tmp-<id>`` folder first and renamed into place when complete, so a crash leaves no half
result (``ls`` skips the hidden folders; a leftover one is removed by the next save).

The payload of a backtest is :meth:`BacktestResult.to_dict` (metrics, equity, trades, fills) plus the
buy-and-hold metrics of the same bars; of a sweep, :meth:`SweepResult.to_dict` (every combination's
metrics) plus the same buy-and-hold metrics. Numbers are raw (not formatted); NaN is ``null``.

``schema_version`` (:data:`SCHEMA_VERSION`) is the layout of ``result.json``; a result written by a newer
version is an error naming its file (results stored before the field existed are version 1).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.types import schema_problem

HEADLINE = ("total_return", "sharpe", "max_drawdown", "n_trades")
"""The metrics a result's ``summary`` keeps (what ``ls`` and the dashboards' list show)."""
__all__ = [
    "ResultError",
    "StoredResult",
    "list_results",
    "load_result",
    "remove_result",
    "results_dir",
    "save_result",
    "store_backtest",
    "store_sweep",
]

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1  # of result.json
REPORT_FILE = "report.html"
REPORT_PENDING = ".report-pending"
"""Present while a background process writes the report (see :func:`save_result`)."""
REPORT_ERROR = ".report-error"
_REPORT_WAIT_S = 120.0
_ID = re.compile(r"^\d{8}T\d{12}Z-[A-Za-z0-9_.-]+-[0-9a-f]{4}$")
_STALE_TMP_S = 3600.0


class ResultError(ValueError):
    """A stored result that is absent, ambiguous or unreadable (the message names it)."""


@dataclass(frozen=True)
class StoredResult:
    id: str
    path: Path
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "?"))

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.data.get("summary") or {})

    @property
    def report(self) -> Path | None:
        p = self.path / REPORT_FILE
        return p if p.exists() else None

    @property
    def report_pending(self) -> bool:
        """Whether a background process is still writing the HTML report (its marker is there and fresh)."""
        m = self.path / REPORT_PENDING
        try:
            return time.time() - m.stat().st_mtime < _REPORT_WAIT_S
        except OSError:
            return False

    @property
    def report_error(self) -> str | None:
        """Why the background report failed, if it did."""
        try:
            return (self.path / REPORT_ERROR).read_text(encoding="utf-8").strip() or "failed"
        except OSError:
            return None

    def wait_report(self, timeout_s: float = _REPORT_WAIT_S) -> Path | None:
        """The report, once the background process that writes it is done (None if there is none)."""
        deadline = time.monotonic() + timeout_s
        while self.report is None and self.report_pending and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.report


def results_dir(data_dir: str | Path) -> Path:
    """``<data>/backtests``."""
    return Path(data_dir) / "backtests"


def new_id(strategy: str, now: datetime | None = None) -> str:
    t = (now or datetime.now(UTC)).astimezone(UTC)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(strategy)).strip("._") or "result"
    return f"{t:%Y%m%dT%H%M%S%f}Z-{name[:40]}-{secrets.token_hex(2)}"


def _json_default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


def _clean_leaf(x: Any) -> Any:
    """:func:`_clean` of one list item, without a call per finite float or string (an equity curve is 10^5
    [time, value] pairs: the recursion cost 0.4 s)."""
    if type(x) is list and len(x) == 2:
        t, y = x
        return [t if type(t) is str else _clean(t), y if type(y) is float and math.isfinite(y) else _clean(y)]
    if (type(x) is float and math.isfinite(x)) or type(x) is str:
        return x
    return _clean(x)


def _clean(v: Any) -> Any:
    """NaN -> None, ±inf -> 'inf'/'-inf' (strict JSON), recursively."""
    if isinstance(v, float):
        if v != v:
            return None
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, Mapping):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean_leaf(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        try:
            return _clean(v.item())
        except (TypeError, ValueError):
            return v
    return v


def save_result(
    root: str | Path,
    kind: str,
    strategy: str,
    payload: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    command: list[str] | None = None,
    report: Callable[[Path], Any] | None = None,
    background: bool = False,
    ready: Mapping[str, Any] | None = None,
) -> StoredResult:
    """Write one result folder (atomically: complete or absent) and return it. ``report(path)`` writes the
    HTML report to ``path``. ``payload`` is made strict JSON (NaN -> null, ±inf -> "inf"); ``ready`` holds
    payload keys that are strict JSON already and are written as given (an equity curve of 10^5 points made
    by :func:`~workbench.backtest.engine.equity_pairs`: walking it again cost 0.2 s).

    ``background`` (the command line's choice): the result is stored first and the report is written by a
    forked child process, so that the command returns without waiting for it (the report costs 1-3 s: plotly
    and the figures, about as long as the backtest itself). The folder holds ``.report-pending`` until the report
    is in place (:meth:`StoredResult.wait_report`; ``workbench backtests show`` waits), or ``.report-error`` with
    the reason if it failed. Where ``os.fork`` is missing, or with ``WORKBENCH_REPORT_INLINE=1``, it is written
    before returning."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.glob(".tmp-*"):  # a crashed save's leftovers (never a folder a live save is writing)
        try:
            if now - old.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    rid = new_id(strategy)
    tmp = root / f".tmp-{rid}"
    tmp.mkdir()
    try:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "id": rid,
            "kind": kind,
            "created": datetime.now(UTC).isoformat(),
            "command": command,
            "summary": _clean(dict(summary)),
            **_clean(dict(payload)),
            **dict(ready or {}),
        }
        # compact: with an indent json falls back to its pure-Python encoder (0.5 s for 120k equity points)
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False, default=_json_default)
        (tmp / RESULT_FILE).write_text(text, encoding="utf-8")
        later = report is not None and background and _can_fork()
        if report is not None and not later:
            report(tmp / REPORT_FILE)
        if later:
            (tmp / REPORT_PENDING).write_text(f"{os.getpid()}\n")
        final = root / rid
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if later:
        assert report is not None
        _report_in_child(final, report)
    return StoredResult(rid, final, doc)


def _can_fork() -> bool:
    return hasattr(os, "fork") and os.environ.get("WORKBENCH_REPORT_INLINE", "").strip() not in (
        "1",
        "true",
        "yes",
    )


def _report_in_child(folder: Path, report: Callable[[Path], Any]) -> None:
    """Fork a child that writes ``folder``'s report and exits; the parent goes on at once.

    The child detaches (its own session, no terminal, stdio to /dev/null, every inherited descriptor above
    stderr closed: no lock or socket of the parent is held by it) and leaves through ``os._exit``, so that none
    of the parent's exit handlers run twice. A failure leaves ``.report-error`` with the reason."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid:
        return
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, _max_fd())
        report(folder / REPORT_FILE)
        code = 0
    except BaseException as e:
        with contextlib.suppress(Exception):
            (folder / REPORT_ERROR).write_text(f"{type(e).__name__}: {e}"[:2000] + "\n", encoding="utf-8")
    finally:
        with contextlib.suppress(Exception):
            (folder / REPORT_PENDING).unlink()
        os._exit(code)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (AttributeError, ValueError, OSError):
        return 4096


def _ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _ID.match(p.name))


def _read(root: Path, rid: str) -> StoredResult:
    path = root / rid
    f = path / RESULT_FILE
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(f"stored result {rid}: {f} is missing") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ResultError(f"stored result {rid}: cannot read {f}: {e}") from None
    if not isinstance(data, dict):
        raise ResultError(f"stored result {rid}: {f} is not a JSON object")
    problem = schema_problem(data.get("schema_version", 1), SCHEMA_VERSION)
    if problem:
        raise ResultError(f"stored result {rid}: {f} has {problem}")
    return StoredResult(rid, path, data)


def list_results(root: str | Path) -> list[StoredResult]:
    """Every stored result, oldest first; an unreadable one is listed with an ``error`` in its data."""
    out = []
    for rid in _ids(Path(root)):
        try:
            out.append(_read(Path(root), rid))
        except ResultError as e:
            out.append(StoredResult(rid, Path(root) / rid, {"kind": "?", "error": str(e)}))
    return out


def resolve(root: str | Path, ref: str) -> str:
    """The id ``ref`` names: a full id, a unique prefix of one, or ``last`` (the newest)."""
    ids = _ids(Path(root))
    if not ids:
        raise ResultError(
            f"no stored results in {root}; `workbench backtest` and `workbench sweep` store theirs"
        )
    if ref == "last":
        return ids[-1]
    if ref in ids:
        return ref
    hits = [i for i in ids if i.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ResultError(
            f"{ref!r} matches {len(hits)} stored results: {', '.join(hits[:5])}; give more of the id"
        )
    raise ResultError(f"no stored result {ref!r} in {root}; `workbench backtests ls` lists them")


def load_result(root: str | Path, ref: str) -> StoredResult:
    return _read(Path(root), resolve(root, ref))


def remove_result(root: str | Path, ref: str) -> str:
    """Delete one result folder; returns its id."""
    rid = resolve(root, ref)
    shutil.rmtree(Path(root) / rid)
    return rid


def store_backtest(
    root: str | Path,
    res: Any,
    bh: Mapping[str, Any],
    candles: Any,
    *,
    command: list[str] | None = None,
    background: bool = False,
) -> StoredResult:
    """Store a :class:`~workbench.backtest.engine.BacktestResult`: its JSON (metrics, equity, trades, fills, the
    buy-and-hold metrics ``bh``) and its HTML report (drawn on ``candles``). ``workbench backtest`` and the
    dashboards' run form both store through here, so their results look alike."""

    def write_report(
        *a: Any, **kw: Any
    ) -> Any:  # plotly is imported where the report is drawn (maybe a child)
        from workbench.viz.report import write_report as draw

        return draw(*a, **kw)

    summary = {
        "strategy": res.strategy,
        "params": res.params,
        "exchange": res.exchange,
        "symbols": res.symbols,
        "timeframe": res.timeframe,
        "start": res.start.isoformat(),
        "end": res.end.isoformat(),
        "benchmark": res.benchmark,
        "metrics": {k: res.metrics.get(k) for k in HEADLINE},
    }
    payload = {**res.to_dict(), "buy_and_hold": dict(bh)}
    equity = payload.pop("equity")  # strict JSON already (engine.equity_pairs)
    return save_result(
        root,
        "backtest",
        res.strategy,
        payload,
        summary,
        command=command,
        report=lambda p: write_report(res, p, candles=candles),
        background=background,
        ready={"equity": equity},
    )


def store_sweep(
    root: str | Path,
    res: Any,
    bh: Mapping[str, Any],
    benchmark: str,
    *,
    exchange: str,
    symbols: list[str],
    timeframe: str,
    top: int = 20,
    command: list[str] | None = None,
    background: bool = False,
) -> StoredResult:
    """Store a :class:`~workbench.backtest.sweep.SweepResult`: every combination's metrics, the best one, buy
    and hold, and the heatmap report."""

    def write_sweep_report(*a: Any, **kw: Any) -> Any:  # plotly is imported where the report is drawn
        from workbench.viz.sweep import write_sweep_report as draw

        return draw(*a, **kw)

    best = res.best or {}
    summary = {
        "strategy": res.strategy,
        "params": best.get("params"),
        "exchange": exchange,
        "symbols": list(symbols),
        "timeframe": timeframe,
        "start": None if res.start is None else res.start.isoformat(),
        "end": None if res.end is None else res.end.isoformat(),
        "benchmark": benchmark,
        "n_combinations": res.n_combinations,
        "n_valid": res.n_valid,
        "ranked_by": res.metric,
        "metrics": {k: best.get(k) for k in HEADLINE},
    }
    payload = {**res.to_dict(), "buy_and_hold": dict(bh), "benchmark": benchmark}
    return save_result(
        root,
        "sweep",
        res.strategy,
        payload,
        summary,
        command=command,
        report=lambda p: write_sweep_report(res, p, top=top),
        background=background,
    )
