"""Features over Candles: TA-Lib indicators, declarative feature sets, labels and gap cleaning.

Pure: imports only numpy, pandas, talib, pydantic and :mod:`workbench.types` (no I/O, no store, no plotting).
Every feature at bar ``t`` uses only ``candles[:t+1]``; labels (:mod:`workbench.features.labels`) are the
one deliberate exception and are forward-looking by design.
"""

from workbench.features.analysis import information_coefficient
from workbench.features.clean import drop_filler_bars, fill_gaps, find_gaps
from workbench.features.indicators import (
    adx,
    atr,
    bbands,
    candle_patterns,
    ema,
    functions,
    indicator,
    lookback,
    macd,
    obv,
    rsi,
    sma,
    stoch,
    vwap,
)
from workbench.features.labels import direction, forward_returns, triple_barrier
from workbench.features.spec import FeatureSpec, IndicatorItem, RollingItem, Scaler, build_features

__all__ = [
    "FeatureSpec",
    "IndicatorItem",
    "RollingItem",
    "Scaler",
    "adx",
    "atr",
    "bbands",
    "build_features",
    "candle_patterns",
    "direction",
    "drop_filler_bars",
    "ema",
    "fill_gaps",
    "find_gaps",
    "forward_returns",
    "functions",
    "indicator",
    "information_coefficient",
    "lookback",
    "macd",
    "obv",
    "rsi",
    "sma",
    "stoch",
    "triple_barrier",
    "vwap",
]
