"""What the research pages (Analytics, Backtests, Models) share: where the data folder is, a stored backtest or a
trading session read back as a result-like object that the :mod:`workbench.viz` figures take, formatted metric
tables, and the empty / error states that stand in for a chart or a traceback.

A stored backtest (``<data>/backtests/<id>/result.json``, :mod:`workbench.backtest.results`) becomes a
:class:`ResultView`: its equity curve, closed trades, metrics, initial cash and symbols, exactly as stored (the
numbers are not recomputed). A session (``<data>/trading/sessions/<name>/journal.sqlite``) becomes one too: its
``equity`` rows are the curve, its metrics are :func:`workbench.backtest.metrics.compute_metrics` of that curve
and of its round trips (:func:`round_trips`: from flat to flat per symbol, from the journal's fills). Nothing
here writes; the journal is opened read-only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.config import Settings, load_settings
from workbench.metricdefs import format_metric, label, ordered, quote_currency
from workbench.panels.common import figure_widget

__all__ = [
    "ResultView",
    "data_dir",
    "empty_state",
    "error_state",
    "figure_widget",
    "list_sessions",
    "metrics_html",
    "result_view",
    "round_trips",
    "session_view",
    "table_html",
]

_CSS = (
    "<style>.wb-empty{padding:18px;color:#555;background:#f6f6f6;border:1px dashed #bbb;border-radius:6px;"
    "margin:6px 0}.wb-error{padding:12px;color:#8a1f11;background:#fdecea;border:1px solid #f5c6cb;"
    "border-radius:6px;margin:6px 0}.wb-table{border-collapse:collapse;font-size:13px}"
    ".wb-table th,.wb-table td{padding:3px 10px;border-bottom:1px solid #e3e3e3;text-align:right}"
    ".wb-table th:first-child,.wb-table td:first-child{text-align:left}.wb-table th{background:#fafafa}"
    "</style>"
)


def data_dir(settings: Settings | None = None, data: str | Path | None = None) -> Path:
    """The data folder: ``data`` when given (not empty), else the settings' (loaded from the usual place when
    None)."""
    if data:
        return Path(data).expanduser()
    return (settings or load_settings()).data_dir


# ------------------------------------------------------------------------------------------ states


def empty_state(text: str) -> W.HTML:
    """A grey box saying why there is nothing to show (and how to get something)."""
    return W.HTML(_CSS + f'<div class="wb-empty">{html.escape(text)}</div>')


def error_state(text: str) -> W.HTML:
    """A red box with an error in words (never a traceback)."""
    return W.HTML(_CSS + f'<div class="wb-error">{html.escape(text)}</div>')


def loading_state(text: str = "loading…") -> W.HTML:
    return W.HTML(_CSS + f'<div class="wb-empty">{html.escape(text)}</div>')


# ------------------------------------------------------------------------------------------ tables


def table_html(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table of text cells (escaped)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return _CSS + f'<table class="wb-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def metrics_rows(
    columns: Mapping[str, Mapping[str, Any]], symbols: Sequence[str], keys: Sequence[str] | None = None
) -> list[list[str]]:
    """One row per metric (label, then each column's value formatted by :mod:`workbench.metricdefs`)."""
    cur = quote_currency(list(symbols))
    if keys is None:
        seen: dict[str, None] = {}
        for m in columns.values():
            seen.update(dict.fromkeys(k for k in m if k != "var_level"))
        keys = ordered(seen)
    return [[label(k), *(format_metric(k, m.get(k), cur) for m in columns.values())] for k in keys]


def metrics_html(
    columns: Mapping[str, Mapping[str, Any]], symbols: Sequence[str], keys: Sequence[str] | None = None
) -> str:
    """The metrics of one or more results side by side (``columns``: heading -> metrics)."""
    return table_html(["metric", *columns], metrics_rows(columns, symbols, keys))


# ------------------------------------------------------------------------------------------ results


@dataclass
class ResultView:
    """What the :mod:`workbench.viz` figures read of a result (duck-typed ``BacktestResultLike``)."""

    name: str
    kind: str  # "backtest" or "session"
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str | None
    exchange: str | None
    equity: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, Any]
    config: Any
    benchmark: str | None = None
    buy_and_hold: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None

    @property
    def start(self) -> pd.Timestamp:
        return self.equity.index[0]

    @property
    def end(self) -> pd.Timestamp:
        return self.equity.index[-1]


def _times(values: Iterable[Any]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def result_view(stored: Any) -> ResultView:
    """A stored backtest (:class:`~workbench.backtest.results.StoredResult` of kind ``backtest``) as a view;
    a ``ValueError`` naming the result if it is not one or has no equity curve."""
    d = stored.data
    if "error" in d:
        raise ValueError(str(d["error"]))
    if stored.kind != "backtest":
        raise ValueError(f"stored result {stored.id} is a {stored.kind}, not a backtest")
    eq = d.get("equity") or []
    if not eq:
        raise ValueError(f"stored result {stored.id} has no equity curve")
    equity = pd.Series(
        [float("nan") if v is None else float(v) for _, v in eq],
        index=_times(t for t, _ in eq),
        name="equity",
    )
    trades = pd.DataFrame(d.get("trades") or [])
    for c in ("entry_time", "exit_time"):
        if c in trades:
            trades[c] = pd.to_datetime(trades[c], utc=True, format="ISO8601")
    cfg = dict(d.get("config") or {})
    metrics = dict(d.get("metrics") or {})
    # a backtest stores its curve, not its last value: the final equity is the curve's last point
    metrics.setdefault("final_equity", float(equity.iloc[-1]))
    return ResultView(
        name=stored.id,
        kind="backtest",
        strategy=str(d.get("strategy", "?")),
        params=dict(d.get("params") or {}),
        symbols=list(d.get("symbols") or []),
        timeframe=d.get("timeframe"),
        exchange=d.get("exchange"),
        equity=equity,
        trades=trades,
        metrics=metrics,
        config=SimpleNamespace(**cfg) if cfg else SimpleNamespace(init_cash=None),
        benchmark=d.get("benchmark"),
        buy_and_hold=dict(d.get("buy_and_hold") or {}),
        report=stored.report,
    )


def list_sessions(data: Path) -> list[str]:
    """The sessions with a journal under ``<data>/trading/sessions/``, by name."""
    root = Path(data) / "trading" / "sessions"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "journal.sqlite").is_file())


def round_trips(fills: Sequence[Any]) -> pd.DataFrame:
    """Closed trades from fills (records with ``timestamp`` ms, ``symbol``, ``side``, ``amount``, ``price``,
    ``fee`` in quote): a trade opens when a symbol's position leaves zero and closes when it is back at zero;
    its PnL is the quote cash it brought in less its fees (so it is the PnL of the whole round trip, scaling in
    and out included). A fill that flips the position closes one trade and opens the next with the rest.
    Columns as a backtest's trades: ``symbol, direction, entry_time, exit_time, size, pnl, status``."""
    cols = ["symbol", "direction", "entry_time", "exit_time", "size", "pnl", "fees", "status"]
    state: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    eps = 1e-12
    for f in sorted(fills, key=lambda f: _get(f, "timestamp")):
        sym = str(_get(f, "symbol"))
        sign = 1.0 if str(_get(f, "side")).lower() == "buy" else -1.0
        amount, price = float(_get(f, "amount")), float(_get(f, "price"))
        fee = float(_get(f, "fee") or 0.0)
        ts = pd.Timestamp(int(_get(f, "timestamp")), unit="ms", tz="UTC")
        while amount > eps:
            st = state.get(sym)
            if st is None:
                st = state[sym] = {"pos": 0.0, "cash": 0.0, "fees": 0.0, "entry": ts, "size": 0.0}
            pos = st["pos"]
            # the part of this fill that moves the position towards zero, at most to zero
            take = min(amount, abs(pos)) if pos * sign < 0 else amount
            share = take / float(_get(f, "amount"))
            st["pos"] = pos + sign * take
            st["cash"] -= sign * take * price
            st["fees"] += fee * share
            st["size"] = max(st["size"], abs(st["pos"]))
            amount -= take
            if abs(st["pos"]) <= eps:
                out.append(
                    {
                        "symbol": sym,
                        "direction": "long" if pos > 0 else "short",
                        "entry_time": st["entry"],
                        "exit_time": ts,
                        "size": st["size"],
                        "pnl": st["cash"] - st["fees"],
                        "fees": st["fees"],
                        "status": "closed",
                    }
                )
                del state[sym]
    return pd.DataFrame(out, columns=cols)


def _get(f: Any, key: str) -> Any:
    return f[key] if isinstance(f, Mapping) else getattr(f, key)


def session_view(data: Path, session: str) -> ResultView:
    """A session's journal as a view: its equity samples, metrics computed with ``compute_metrics`` and its
    round trips. A ``ValueError`` naming the session when it has no journal or no equity yet."""
    from workbench.backtest.metrics import compute_metrics
    from workbench.trading.journal import Journal, fill_to_dict, journal_path

    path = journal_path(data, session)
    if not path.is_file():
        raise ValueError(f"session {session!r}: no journal at {path}")
    with Journal(path, readonly=True) as j:
        rows = j.read(kinds="equity")
        fills = [fill_to_dict(f) for f in j.fills()]
        spec = j.meta_get("spec", None) or {}
        init = j.meta_get("initial_balances", None) or {}
    if not rows:
        raise ValueError(f"session {session!r}: no equity recorded yet")
    s = pd.Series(
        [float(r.data["equity"]) for r in rows],
        index=pd.DatetimeIndex(pd.to_datetime([r.ts for r in rows], unit="ms", utc=True)),
        name="equity",
    )
    s = s[~s.index.duplicated(keep="last")].sort_index()
    trades = round_trips(fills)
    symbols = [str(x) for x in spec.get("symbols") or []] or sorted({str(f["symbol"]) for f in fills})
    quote = quote_currency(symbols)
    init_cash = init.get(quote) if quote and isinstance(init, Mapping) and len(init) == 1 else None
    strategy = spec.get("strategy")
    metrics: dict[str, Any] = {}
    if len(s) >= 2:
        metrics = compute_metrics(s, trades)
    return ResultView(
        name=session,
        kind="session",
        strategy=str(strategy.get("name") if isinstance(strategy, Mapping) else strategy or "session"),
        params=dict(spec.get("params") or {}),
        symbols=symbols,
        timeframe=spec.get("timeframe"),
        exchange=spec.get("exchange"),
        equity=s,
        trades=trades,
        metrics=metrics,
        config=SimpleNamespace(init_cash=float(init_cash) if finite(init_cash) else None),
    )


def trade_rows(trades: pd.DataFrame, symbols: Sequence[str], limit: int = 200) -> list[list[str]]:
    """Closed trades for a table: symbol, direction, entry, exit, duration, PnL (newest first)."""
    if trades is None or not len(trades):
        return []
    t = trades
    if "status" in t:
        t = t[t["status"].astype(str) != "open"]
    cur = quote_currency(list(symbols))
    rows = []
    for _, r in t.iloc[::-1].head(limit).iterrows():
        dur = duration_days(r.get("entry_time"), r.get("exit_time"))
        rows.append(
            [
                str(r.get("symbol", "")),
                str(r.get("direction", "")),
                _ts(r.get("entry_time")),
                _ts(r.get("exit_time")),
                "n/a" if dur is None else format_metric("max_drawdown_duration_days", dur),
                format_metric("expectancy", r.get("pnl"), cur),
            ]
        )
    return rows


def duration_days(entry: Any, exit_: Any) -> float | None:
    if entry is None or exit_ is None or pd.isna(entry) or pd.isna(exit_):
        return None
    return (pd.Timestamp(exit_) - pd.Timestamp(entry)) / pd.Timedelta(days=1)


def _ts(t: Any) -> str:
    if t is None or (not isinstance(t, str) and pd.isna(t)):
        return ""
    return f"{pd.Timestamp(t):%Y-%m-%d %H:%M} UTC"


def finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
