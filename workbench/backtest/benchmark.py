"""The benchmark every backtest is measured against: buy and hold of its own symbols over its own bars.

One definition for the CLI, the HTML report and the notebooks, so that ``beta`` means the same everywhere:

* **Buy and hold** of n symbols puts ``1/n`` of the initial cash into each at the **open of the first bar**
  (the earliest fill a strategy can have) and holds to the end, without fees or slippage. Its value at each
  close is ``init_cash × mean_i(close_i / open_i[first bar])``; as for the strategy, the curve starts from the
  initial cash one bar before the first bar.
* **Beta** (``metrics["beta"]``) is the OLS slope of the strategy's per-bar returns on the per-bar returns of
  that buy-and-hold curve (:mod:`workbench.backtest.metrics`), and :func:`benchmark_name` names it, e.g.
  ``"buy and hold BTC/USDT"``. Buy and hold has a beta of 1 to itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from workbench.backtest.metrics import compute_metrics

__all__ = ["benchmark_name", "buy_and_hold_curve", "buy_and_hold_metrics"]


def benchmark_name(symbols: Sequence[str]) -> str:
    """``'buy and hold BTC/USDT'``; several symbols: ``'buy and hold BTC/USDT + ETH/USDT (equal weights)'``."""
    syms = [str(s) for s in symbols]
    return "buy and hold " + " + ".join(syms) + (" (equal weights)" if len(syms) > 1 else "")


def buy_and_hold_curve(
    candles: pd.DataFrame | Mapping[str, pd.DataFrame], init_cash: float = 1.0, *, prepend: bool = False
) -> pd.Series:
    """The buy-and-hold value per bar (see the module docstring); ``prepend``: start from ``init_cash`` one
    bar before the first bar, as the strategy's metrics do."""
    frames = {"asset": candles} if isinstance(candles, pd.DataFrame) else dict(candles)
    if not frames:
        raise ValueError("buy and hold needs at least one symbol")
    parts = []
    for sym, df in frames.items():
        if len(df) == 0:
            raise ValueError(f"buy and hold: no bars for {sym}")
        parts.append(df["close"].astype("float64") / float(df["open"].iloc[0]))
    value = pd.concat(parts, axis=1).mean(axis=1) * float(init_cash)
    value.name = "buy_and_hold"
    if prepend:
        idx = value.index
        step = idx[1] - idx[0] if len(idx) > 1 else pd.Timedelta(1, "h")
        value = pd.concat([pd.Series([float(init_cash)], index=[idx[0] - step]), value])
        value.name = "buy_and_hold"
    return value


def buy_and_hold_metrics(
    candles: pd.DataFrame | Mapping[str, pd.DataFrame],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    init_cash: float = 10_000.0,
) -> dict[str, float]:
    """:func:`~workbench.backtest.metrics.compute_metrics` of buy and hold over the bars in ``[start, end]``
    (both inclusive: a result's first and last bar), with its beta to itself (1)."""
    frames = {"asset": candles} if isinstance(candles, pd.DataFrame) else dict(candles)

    def cut(df: pd.DataFrame) -> pd.DataFrame:
        m = pd.Series(True, index=df.index)
        if start is not None:
            m &= df.index >= start
        if end is not None:
            m &= df.index <= end
        return df[m.to_numpy()]

    frames = {k: cut(v) for k, v in frames.items()}
    curve = buy_and_hold_curve(frames, init_cash, prepend=True)
    held = pd.Series(1.0, index=curve.index[1:])
    out = compute_metrics(curve, None, position=held, benchmark=curve.iloc[1:])
    out["final_equity"] = float(curve.iloc[-1])
    return out
