"""The causal per-bar sentiment series: scored news items -> one row per bar, aligned to candles.

An item published at time ``τ`` counts in the bar whose open ``t`` satisfies ``t <= τ < t + timeframe``, i.e.
the first bar whose **close is after τ**. The bar's value is therefore known at its close and never earlier:
the feature at bar ``t`` (close ``t + tf``) uses only items with ``τ < t + tf``. An item stamped exactly at a
close falls into the next bar. This is the candle convention of the workbench (rows are bar-open times, values
known at the close), so a strategy that decides at the close of ``t`` and trades at the open of ``t + 1`` never
sees a future item.

Pure (numpy, pandas, :mod:`workbench.types`). The scoring model is anything with ``predict_proba(texts)`` ->
``(N, 3)`` in :data:`LABELS` order (the models of :mod:`workbench.ml.sentiment`); the items come from
:mod:`workbench.data.news` or any DataFrame with ``time`` and ``text``.

>>> series = sentiment_series(news, model, "1h", symbol="BTC/USDT")
>>> features = align_to_candles(series, candles, max_ffill=6)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from workbench.types import Timeframe, times_ms

__all__ = ["LABELS", "ProbaModel", "align_to_candles", "label_index", "sentiment_series", "text_list"]

LABELS: Final = ("bearish", "neutral", "bullish")
"""Column order of ``predict_proba``; class index i has score ``i - 1`` (-1, 0, +1)."""


class ProbaModel(Protocol):
    """What :func:`sentiment_series` needs of a model: class probabilities in :data:`LABELS` order."""

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray: ...


def label_index(labels: Any) -> np.ndarray:
    """Labels (-1/0/+1 or 'bearish'/'neutral'/'bullish') -> class index 0/1/2."""
    arr = np.asarray(labels.to_numpy() if isinstance(labels, pd.Series) else list(labels), dtype=object)
    out = np.empty(len(arr), dtype=np.int64)
    for i, v in enumerate(arr):
        if isinstance(v, str):
            if v.lower() not in LABELS:
                raise ValueError(f"unknown label {v!r}: expected one of {LABELS} or -1/0/+1")
            out[i] = LABELS.index(v.lower())
        else:
            try:
                f = float(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"unknown label {v!r}: expected -1/0/+1 or one of {LABELS}") from e
            if f not in (-1.0, 0.0, 1.0):
                raise ValueError(
                    f"unknown label {v!r}: expected -1 (bearish), 0 (neutral) or +1 (bullish); "
                    "raw dataset codes (0 bearish, 1 bullish, 2 neutral) must be mapped first (load_dataset does)"
                )
            out[i] = int(f) + 1
    return out


def text_list(texts: Any) -> list[str]:
    """Texts as a list of ``str`` (missing values -> ``""``); one bare string is refused, not split."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got one string (wrap it in a list)")
    out = []
    for t in texts:
        if not isinstance(t, str):
            missing = t is None or t is pd.NA or (isinstance(t, float) and np.isnan(t))
            t = "" if missing else str(t)
        out.append(t)
    return out


def sentiment_series(
    items: pd.DataFrame,
    model: ProbaModel | None,
    timeframe: str | Timeframe,
    symbol: str | None = None,
) -> pd.DataFrame:
    """Per-bar sentiment of ``items`` (columns ``time``, ``text``, optionally ``symbol``).

    Each item is scored by ``model`` (``score`` = P(bull) - P(bear), class = argmax); with ``model=None`` the
    items must carry a ``score`` column (and optionally ``label`` in -1/0/+1; else the sign of the score).
    With ``symbol``, only items of that symbol count.

    Returns one row per bar that has items, indexed by the bar's **open** time (UTC ``DatetimeIndex`` named
    ``time``, like Candles): ``score`` (mean), ``count``, ``bull_share``, ``bear_share``, ``neutral_share`` and
    ``available_at`` (the bar's close). An item at ``τ`` lands in the bar with ``open <= τ < close``: it is
    used at that bar's close and never earlier (an item at exactly a close goes to the next bar).
    ``attrs``: ``timeframe``, ``symbol``.
    """
    tf = Timeframe.parse(timeframe)
    missing = {"time"} - set(items.columns)
    if model is not None and "text" not in items.columns:
        missing.add("text")
    if model is None and "score" not in items.columns:
        raise ValueError("items need a 'score' column when no model is given")
    if missing:
        raise ValueError(f"items lack column(s) {', '.join(sorted(missing))}")
    df = items
    if symbol is not None:
        if "symbol" not in df.columns:
            raise ValueError(f"symbol={symbol!r} given but the items have no 'symbol' column")
        df = df[df["symbol"] == symbol]
    t = times_ms(df["time"])
    if model is not None:
        p = model.predict_proba(text_list(df["text"])) if len(df) else np.zeros((0, 3))
        score = p[:, 2] - p[:, 0]
        cls = np.argmax(p, axis=1) - 1 if len(df) else np.zeros(0, dtype=np.int64)
    else:
        score = df["score"].to_numpy(dtype=float)
        if not np.isfinite(score).all():
            raise ValueError("the 'score' column has missing or infinite values")
        cls = label_index(df["label"]) - 1 if "label" in df.columns else np.sign(score).astype(np.int64)
    bar = (t // tf.ms) * tf.ms
    agg = (
        pd.DataFrame({"bar": bar, "score": score, "bull": cls == 1, "bear": cls == -1, "neutral": cls == 0})
        .groupby("bar", sort=True)
        .agg(
            score=("score", "mean"),
            count=("score", "size"),
            bull_share=("bull", "mean"),
            bear_share=("bear", "mean"),
            neutral_share=("neutral", "mean"),
        )
    )
    index = pd.DatetimeIndex(
        pd.to_datetime(agg.index.to_numpy(dtype=np.int64), unit="ms", utc=True), name="time"
    )
    out = pd.DataFrame(
        {
            "score": agg["score"].to_numpy(dtype=float),
            "count": agg["count"].to_numpy(dtype=np.int64),
            "bull_share": agg["bull_share"].to_numpy(dtype=float),
            "bear_share": agg["bear_share"].to_numpy(dtype=float),
            "neutral_share": agg["neutral_share"].to_numpy(dtype=float),
        },
        index=index,
    )
    out["available_at"] = out.index + pd.Timedelta(milliseconds=tf.ms)
    out.attrs.update(timeframe=tf.value, symbol=symbol)
    return out


def align_to_candles(
    series: pd.DataFrame,
    candles: pd.DataFrame,
    max_ffill: int = 6,
    timeframe: str | Timeframe | None = None,
) -> pd.DataFrame:
    """The sentiment known at the close of each candle bar, on the candles' index.

    For the bar opening at ``t`` (close ``t + tf``) this is the latest series bar whose ``available_at`` is
    at or before ``t + tf`` - the same bar when it has items, else an older one, carried forward at most
    ``max_ffill`` bars (older: NaN). ``count`` is the number of items in the bar itself (0 when carried);
    ``age_bars`` is how many bars old the carried values are (NaN when none). ``series`` must have the
    candles' timeframe (``timeframe`` or ``series.attrs['timeframe']``); ``candles`` are indexed by bar-open
    times (a UTC ``DatetimeIndex``, or a ``timestamp`` column in epoch ms).
    """
    tf_value = timeframe or series.attrs.get("timeframe")
    if not tf_value:
        raise ValueError("the series' timeframe is unknown: pass timeframe= (sentiment_series records it)")
    tf = Timeframe.parse(tf_value)
    series = series.sort_index()
    if isinstance(candles.index, pd.DatetimeIndex):
        opens = candles.index
    elif "timestamp" in candles.columns:
        opens = pd.DatetimeIndex(
            pd.to_datetime(candles["timestamp"].to_numpy(dtype=np.int64), unit="ms", utc=True)
        )
    else:
        raise ValueError("candles need a DatetimeIndex of bar-open times or a 'timestamp' column (epoch ms)")
    open_ms = opens.as_unit("ns").asi8 // 1_000_000
    if len(open_ms) > 1:
        step = int(np.min(np.diff(open_ms)))
        if step != tf.ms:
            raise ValueError(
                f"the series is {tf} but the candles are spaced {step} ms apart: build the series with the "
                "candles' timeframe"
            )
    if np.any(open_ms % tf.ms):
        raise ValueError(f"candle open times are not on the {tf} grid")
    cols = ["score", "bull_share", "bear_share", "neutral_share"]
    cols = [c for c in cols if c in series.columns]
    s_open = series.index.as_unit("ns").asi8 // 1_000_000 if len(series) else np.zeros(0, dtype=np.int64)
    close_ms = open_ms + tf.ms
    s_avail = s_open + tf.ms
    # latest series bar available at or before each candle close
    pos = np.searchsorted(s_avail, close_ms, side="right") - 1
    have = pos >= 0
    age = np.full(len(open_ms), np.nan)
    age[have] = (close_ms[have] - s_avail[pos[have]]) / tf.ms
    use = have & (age <= max_ffill)
    out = pd.DataFrame(index=candles.index if isinstance(candles.index, pd.DatetimeIndex) else opens)
    for c in cols:
        vals = np.full(len(open_ms), np.nan)
        vals[use] = series[c].to_numpy(dtype=float)[pos[use]]
        out[c] = vals
    count = np.zeros(len(open_ms), dtype=np.int64)
    same = have & (age == 0)
    count[same] = series["count"].to_numpy(dtype=np.int64)[pos[same]]
    out["count"] = count
    out["age_bars"] = np.where(use, age, np.nan)
    if not isinstance(candles.index, pd.DatetimeIndex):
        out.index = candles.index
    return out
