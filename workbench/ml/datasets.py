"""Supervised datasets from candles: leak-safe features at the close of t, a label describing what happens
after the close of t, and (for sequence models) windows of the last ``window`` feature rows.

Rows are kept only where every feature of the window and the label are known; ``index[i]`` is the bar whose
close the prediction is made at. The label horizon travels with the dataset, so splitters can purge it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from workbench.features import FeatureSpec, build_features, forward_returns

__all__ = ["DEFAULT_SPEC", "Dataset", "feature_lookback", "make_dataset", "windows"]

DEFAULT_SPEC: dict[str, Any] = {
    "returns": [1, 2, 4, 8, 24],
    "indicators": [
        {"name": "RSI", "params": {"timeperiod": 14}},
        {"name": "NATR", "params": {"timeperiod": 14}},
        {"name": "ADX", "params": {"timeperiod": 14}},
        {"name": "MACD"},
        {"name": "BBANDS", "params": {"timeperiod": 20}, "outputs": ["upperband", "lowerband"]},
    ],
    "rolling": [
        {"stat": "std", "column": "ret_1", "window": 24},
        {"stat": "zscore", "column": "close", "window": 48},
        {"stat": "zscore", "column": "volume", "window": 48},
    ],
    "calendar": ["hour", "dayofweek"],
}
"""Features of the price models by default: returns, a few TA-Lib indicators, rolling statistics and time.
Price-level features (BBANDS bands, MACD) are made relative to the close by :func:`make_features`."""

Target = Literal["direction", "return"]


# TA-Lib functions with infinite (geometrically fading) memory: they need many periods of history to forget
# their start. Cumulative ones (OBV, AD) never forget it: their level depends on where the data begins.
_RECURSIVE = frozenset(
    {
        "EMA",
        "DEMA",
        "TEMA",
        "T3",
        "TRIX",
        "KAMA",
        "MAMA",
        "RSI",
        "STOCHRSI",
        "ADX",
        "ADXR",
        "DX",
        "PLUS_DI",
        "MINUS_DI",
        "PLUS_DM",
        "MINUS_DM",
        "ATR",
        "NATR",
        "MACD",
        "MACDEXT",
        "MACDFIX",
        "PPO",
        "APO",
        "ADOSC",
        "CMO",
        "HT_DCPERIOD",
        "HT_DCPHASE",
        "HT_PHASOR",
        "HT_SINE",
        "HT_TRENDLINE",
        "HT_TRENDMODE",
        "RMA",
        "SUPERTREND",
    }
)
_CUMULATIVE = frozenset({"OBV", "AD"})


def feature_lookback(spec: FeatureSpec | Mapping[str, Any]) -> int:
    """Bars of history after which every feature of ``spec`` no longer depends on where the data starts:
    the longest finite window, and 30x the period of recursive TA-Lib indicators (RSI, EMA, ADX, MACD...,
    whose memory fades geometrically: 30 periods bring the difference below 1e-12). Cumulative indicators
    (OBV, AD) never converge and are refused."""
    spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.model_validate(spec)
    finite = max([*spec.returns, *(r.window for r in spec.rolling), 1])
    recursive = 0
    for item in spec.indicators:
        name = item.name.upper()
        if name in _CUMULATIVE:
            raise ValueError(
                f"{name} is cumulative: its value depends on where the data starts, so a model cannot use it "
                "consistently in batch and live; use a rolling statistic of its change instead"
            )
        periods = [
            int(x)
            for v in item.params.values()
            for x in (v if isinstance(v, list | tuple | range) else [v])
            if isinstance(x, int | float) and not isinstance(x, bool)
        ] or [35]  # TA-Lib defaults (MACD: 26 + 9)
        if name in _RECURSIVE:
            recursive = max(recursive, max(periods) * (2 if name in ("ADX", "ADXR", "DX") else 1))
        else:
            finite = max(finite, max(periods))
    lags = max([0, *spec.lags])
    return max(finite, 30 * recursive) + lags + 10


def make_features(candles: pd.DataFrame, spec: FeatureSpec | Mapping[str, Any]) -> pd.DataFrame:
    """:func:`build_features`, with price-level columns (bands, moving averages, MACD lines) divided by the
    close, so that a model trained on one price regime applies to another."""
    f = build_features(candles, spec)
    close = candles["close"].to_numpy("float64")
    for c in f.columns:
        name = c.lower()
        if name.startswith(("bbands", "sma", "ema", "wma", "kama", "t3", "dema", "tema", "trima")):
            f[c] = f[c].to_numpy() / close - 1.0
        elif name.startswith("macd"):
            f[c] = f[c].to_numpy() / close
    return f


@dataclass
class Dataset:
    X: np.ndarray  # (n, F) or (n, window, F), float32
    y: np.ndarray  # (n,) float32: 1/0 direction or the forward log return
    index: pd.DatetimeIndex  # the bar at whose close each prediction is made
    feature_names: list[str]
    target: str
    horizon: int
    window: int
    fwd_return: np.ndarray  # (n,) the simple forward return over the horizon, for evaluation

    def __len__(self) -> int:
        return len(self.y)

    def flat(self) -> np.ndarray:
        """(n, F) view for non-sequence models: the last row of each window."""
        return self.X if self.X.ndim == 2 else self.X[:, -1, :]


def windows(values: np.ndarray, window: int) -> np.ndarray:
    """(n, F) -> (n - window + 1, window, F) sliding windows (a view, no copy)."""
    if window == 1:
        return values[:, None, :]
    return np.lib.stride_tricks.sliding_window_view(values, window, axis=0).transpose(0, 2, 1)


def make_dataset(
    candles: pd.DataFrame,
    *,
    spec: FeatureSpec | Mapping[str, Any] | None = None,
    target: Target = "direction",
    horizon: int = 24,
    window: int = 1,
    threshold: float = 0.0,
    keep_unlabelled: bool = False,
) -> Dataset:
    """Features (causal) and labels (forward) aligned on bars. ``direction``: 1 if the forward return over
    ``horizon`` bars exceeds ``threshold`` else 0; ``return``: the forward log return.

    ``keep_unlabelled=True`` keeps the last ``horizon`` bars (label NaN) for prediction."""
    if horizon < 1 or window < 1:
        raise ValueError("horizon and window must be >= 1")
    spec = spec if spec is not None else DEFAULT_SPEC
    feats = make_features(candles, spec)
    fwd = forward_returns(candles, horizon).to_numpy("float64")
    values = feats.to_numpy("float64")
    ok_row = np.isfinite(values).all(axis=1)
    n = len(candles)
    # a window is usable when all its rows are
    ok_win = np.zeros(n, dtype=bool)
    if n >= window:
        csum = np.concatenate([[0], np.cumsum(~ok_row)])
        ok_win[window - 1 :] = (csum[window:] - csum[: n - window + 1]) == 0
    labelled = np.isfinite(fwd)
    keep = ok_win & (labelled | keep_unlabelled)
    pos = np.flatnonzero(keep)
    W = windows(values, window)  # row j ends at bar j + window - 1
    X = W[pos - (window - 1)].astype("float32")
    if window == 1:
        X = X[:, 0, :]
    if target == "direction":
        y = np.where(np.isfinite(fwd[pos]), (fwd[pos] > threshold).astype("float32"), np.nan).astype(
            "float32"
        )
    elif target == "return":
        y = np.log1p(fwd[pos]).astype("float32")
    else:
        raise ValueError(f"unknown target {target!r}; targets: direction, return")
    return Dataset(X, y, candles.index[pos], list(feats.columns), target, horizon, window, fwd[pos])
