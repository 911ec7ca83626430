"""Operations on Candles frames (UTC DatetimeIndex of bar-open times, float64 OHLCV). Pure: no I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.types import Timeframe

__all__ = ["resample"]


def resample(candles: pd.DataFrame, timeframe: str, *, partial: bool = False) -> pd.DataFrame:
    """Aggregate candles to a coarser timeframe: first open, max high, min low, last close, summed volume.

    Coarse bars are aligned to the UNIX epoch (as exchanges align them: 4h bars open at 00:00, 04:00, ... UTC)
    and labelled by their open time. A coarse bar missing any of its fine bars (at the edges of the data or
    around an exchange outage) is dropped unless ``partial=True``: a bar built from part of its period is not
    the bar the exchange would report.
    """
    target = Timeframe.parse(timeframe)
    src_tf = candles.attrs.get("timeframe")
    if len(candles) == 0:
        out = candles.copy()
        out.attrs["timeframe"] = target.value
        return out
    ts = candles.index.as_unit("ns").asi8 // 1_000_000
    if src_tf is None:
        step = int(np.min(np.diff(ts))) if len(ts) > 1 else target.ms
    else:
        step = Timeframe.parse(src_tf).ms
    if target.ms % step:
        raise ValueError(f"cannot resample {src_tf or f'{step} ms'} candles to {target}: not a multiple")
    if target.ms == step:
        return candles.copy()
    bucket = ts - ts % target.ms
    g = candles.groupby(bucket, sort=True)
    out = pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "volume": g["volume"].sum(),
        }
    )
    if not partial:
        out = out[g.size().to_numpy() == target.ms // step]
    out.index = pd.DatetimeIndex(
        pd.to_datetime(out.index.to_numpy(), unit="ms", utc=True).as_unit("ns"), name="time"
    )
    out.attrs = {**candles.attrs, "timeframe": target.value}
    return out
