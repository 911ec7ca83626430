"""How the research commands talk to people: metric tables formatted as in the HTML report (from the metric
registry, :mod:`workbench.metricdefs`), settings errors in words, and market data loaded with errors that say
what is stored (a close exchange name, the stored period, a finer timeframe to resample from).

``--json`` files keep the raw numbers; only what is printed is formatted.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from workbench.metricdefs import METRIC_KEYS, format_metric, group, label, ordered, quote_currency
from workbench.types import Timeframe

__all__ = [
    "check_period",
    "compare_table",
    "describe_validation_error",
    "format_frame_values",
    "load_candles",
]

# the options of the research commands that set each BacktestConfig field
_OPTION_OF = {
    "direction": "--direction",
    "fees": "--fees",
    "slippage": "--slippage",
    "size": "--size",
    "size_type": "--notional",
    "sl_stop": "--sl",
    "tp_stop": "--tp",
    "trailing": "--trailing",
    "init_cash": "--init-cash",
}


def compare_table(
    columns: Mapping[str, Mapping[str, Any]],
    symbols: Sequence[str],
    *,
    title: str | None = None,
    keys: Sequence[str] = METRIC_KEYS,
    beta_of: str | None = None,
) -> Table:
    """A table of metrics (rows, in the registry's group order) for each named column of metrics (e.g. the
    strategy and buy and hold), formatted by the registry in the quote currency of ``symbols``. ``beta_of``
    names the benchmark in the beta row's label."""
    currency = quote_currency(list(symbols))
    table = Table(title=title, show_lines=False)
    table.add_column("group")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    shown = [k for k in ordered(keys) if any(k in m for m in columns.values())]
    last_group = None
    for k in shown:
        g = group(k)
        lbl = f"Beta to {beta_of}" if k == "beta" and beta_of else label(k)
        cells = [format_metric(k, m.get(k), currency) if k in m else "" for m in columns.values()]
        table.add_row(g if g != last_group else "", lbl, *cells)
        last_group = g
    return table


def format_frame_values(df: Any, currency: str | None = None) -> Any:
    """A copy of ``df`` with every column named after a registered metric formatted as text."""
    from workbench.metricdefs import METRICS

    out = df.copy()
    for c in out.columns:
        key = _ALIAS.get(str(c), str(c))
        if key in METRICS:
            out[c] = [format_metric(key, v, currency) for v in out[c]]
    return out


def round_floats(df: Any, digits: int = 4) -> Any:
    """A copy of ``df`` with float cells written with ``digits`` significant digits (scores, losses)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = [("n/a" if v != v else f"{v:.{digits}g}") for v in out[c]]
    return out


# columns of the walk-forward table that are registered metrics under another name
_ALIAS = {"is_sharpe": "sharpe", "oos_sharpe": "sharpe", "oos_return": "total_return"}


def describe_validation_error(e: Any) -> str:
    """A pydantic ``ValidationError`` of the backtest settings in words: the option, the value, what is allowed
    (no dump, no URL)."""
    parts = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(x) for x in err.get("loc", ()))
        opt = _OPTION_OF.get(loc, loc or "value")
        msg = str(err.get("msg", "invalid"))
        ctx = err.get("ctx") or {}
        if err.get("type") == "literal_error" and "expected" in ctx:
            msg = f"expected {ctx['expected']}"
        elif msg.startswith("Input should be "):
            msg = "must be " + msg[len("Input should be ") :]
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown setting {opt}")
        else:
            parts.append(f"{opt} {err.get('input')!r}: {msg}")
    return "; ".join(parts) or str(e)


def _fmt_ts(t: Any) -> str:
    return f"{t:%Y-%m-%d %H:%M}"


def load_candles(store: Any, exchange: str, symbol: str, timeframe: str, note: Any = None) -> Any:
    """Stored candles of one series, or a :class:`~workbench.data.store.StoreError` that says what is stored:
    a close exchange or symbol name, or the stored timeframes. A timeframe not stored but a multiple of a
    stored finer one is resampled from it (``note(text)`` says so)."""
    from workbench.data.candles import resample
    from workbench.data.store import StoreError

    key_tf = Timeframe.parse(timeframe)
    stored = store.series("candles")
    same = [k for k in stored if k.exchange == exchange and k.symbol == symbol]
    if any(Timeframe.parse(k.timeframe).ms == key_tf.ms for k in same):
        return store.candles(exchange, symbol, timeframe)
    if same:
        finer = sorted(
            (Timeframe.parse(k.timeframe) for k in same if key_tf.ms % Timeframe.parse(k.timeframe).ms == 0),
            key=lambda t: -t.ms,
        )
        if finer:
            src = finer[0]
            fine = store.candles(exchange, symbol, src.value)
            out = resample(fine, key_tf.value)
            if note is not None:
                note(
                    f"no {key_tf.value} candles stored for {exchange} {symbol}: resampled from the stored "
                    f"{src.value} candles ({len(fine):,} bars -> {len(out):,} {key_tf.value} bars; incomplete "
                    f"bars dropped). `workbench collect ohlcv -t {key_tf.value}` stores the exchange's own."
                )
            if len(out) == 0:
                raise StoreError(
                    f"{exchange} {symbol}: too few {src.value} bars to make one {key_tf.value} bar"
                )
            return out
        have = ", ".join(sorted({k.timeframe for k in same}, key=lambda t: Timeframe.parse(t).ms))
        raise StoreError(
            f"no {key_tf.value} candles stored for {exchange} {symbol}, and no stored timeframe divides it "
            f"(stored: {have}); `workbench collect ohlcv -e {exchange} -s {symbol} -t {key_tf.value}` fetches them"
        )
    exchanges = sorted({k.exchange for k in stored})
    if exchange not in exchanges:
        from workbench.data.exchanges import exchange_ids

        close = difflib.get_close_matches(exchange, exchanges, n=2, cutoff=0.6) or difflib.get_close_matches(
            exchange, exchange_ids(), n=3, cutoff=0.75
        )
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        where = f" (stored exchanges: {', '.join(exchanges)})" if exchanges else ""
        raise StoreError(f"no candles stored for exchange {exchange!r}{hint}{where}")
    symbols = sorted({k.symbol for k in stored if k.exchange == exchange})
    close = difflib.get_close_matches(symbol, symbols, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise StoreError(
        f"no candles stored for {exchange} {symbol}{hint} (stored on {exchange}: {', '.join(symbols)}); "
        f"`workbench collect ohlcv -e {exchange} -s {symbol}` fetches them"
    )


def check_period(data: Any, start: str | None, end: str | None) -> None:
    """A ValueError in words if ``[start, end)`` holds no bar of ``data`` (one frame or a dict): what is
    stored, and where the asked period falls."""
    import pandas as pd

    frames = {str(data.attrs.get("symbol", "data")): data} if isinstance(data, pd.DataFrame) else dict(data)
    for sym, df in frames.items():
        if len(df) == 0:
            raise ValueError(f"{sym}: no candles stored")
        first, last = df.index[0], df.index[-1]
        s = pd.Timestamp(start, tz="UTC") if start is not None else None
        e = pd.Timestamp(end, tz="UTC") if end is not None else None
        stored = (
            f"{sym} {df.attrs.get('timeframe', '')} is stored from {_fmt_ts(first)} to {_fmt_ts(last)} UTC"
        )
        stored = stored.replace("  ", " ")
        if s is not None and e is not None and s >= e:
            raise ValueError(f"--start {start} is not before --end {end}")
        if s is not None and s > last:
            raise ValueError(f"--start {start} is after the last stored bar: {stored} ({len(df):,} bars)")
        if e is not None and e <= first:
            raise ValueError(f"--end {end} is at or before the first stored bar: {stored} ({len(df):,} bars)")
        lo = s if s is not None else first
        hi = e if e is not None else last + pd.Timedelta(1, "ns")
        if not ((df.index >= lo) & (df.index < hi)).any():
            raise ValueError(f"no bars in [{start}, {end}): {stored} ({len(df):,} bars)")
