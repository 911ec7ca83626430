"""workbench.features.labels against plain loops (and their alignment), workbench.features.clean gap rules."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from workbench.features import (
    direction,
    drop_filler_bars,
    fill_gaps,
    find_gaps,
    forward_returns,
    triple_barrier,
)
from workbench.types import candles_from_frame

SAMPLE = Path(__file__).parent.parent / "data" / "sample" / "binance" / "BTCUSDT_1h.csv.gz"
H_NS = 3_600_000_000_000


@cache
def candles() -> pd.DataFrame:
    c = candles_from_frame(pd.read_csv(SAMPLE), timeframe="1h", source=str(SAMPLE))
    c.attrs.update(exchange="binance", symbol="BTC/USDT", timeframe="1h")
    return c


# --- labels against plain loops ------------------------------------------------------------------------------------


def test_forward_returns_and_direction_equal_loops() -> None:
    c = candles()
    close = c["close"].tolist()
    n = len(close)
    for h in (1, 4, 24):
        fwd = forward_returns(c["close"], h)
        want = [close[t + h] / close[t] - 1 if t + h < n else math.nan for t in range(n)]
        assert fwd.name == f"fwd_ret_{h}" and fwd.index.equals(c.index)
        assert_array_equal(fwd.to_numpy(), np.array(want))
        assert_array_equal(forward_returns(c, h).to_numpy(), fwd.to_numpy())  # Candles work too
        for thr in (0.0, 0.005):
            d = direction(c["close"], h, threshold=thr)
            want_d = [
                math.nan if math.isnan(r) else (1.0 if r > thr else -1.0 if r < -thr else 0.0) for r in want
            ]
            assert_array_equal(d.to_numpy(), np.array(want_d))
    assert set(np.unique(direction(c, 1, 0.001).dropna())) == {-1.0, 0.0, 1.0}


def _triple_barrier_loop(c: pd.DataFrame, h: int, pt, sl, vol_window) -> tuple[list, list, list]:
    close, high, low = c["close"].tolist(), c["high"].tolist(), c["low"].tolist()
    n = len(close)
    labels, exits, rets = [], [], []
    for t in range(n):
        if vol_window is None:
            s = 1.0
        elif t < vol_window:
            s = math.nan
        else:
            window = [math.log(close[i] / close[i - 1]) for i in range(t - vol_window + 1, t + 1)]
            s = float(np.std(window, ddof=1))
        if t + h > n - 1 or math.isnan(s):
            labels.append(math.nan), exits.append(None), rets.append(math.nan)
            continue
        up = close[t] * (1 + pt * s) if pt is not None else math.inf
        lo = close[t] * (1 - sl * s) if sl is not None else -math.inf
        for j in range(1, h + 1):
            if low[t + j] <= lo:  # checked first: a bar touching both counts as the stop
                labels.append(-1.0), exits.append(t + j), rets.append(lo / close[t] - 1)
                break
            if high[t + j] >= up:
                labels.append(1.0), exits.append(t + j), rets.append(up / close[t] - 1)
                break
        else:
            labels.append(0.0), exits.append(t + h), rets.append(close[t + h] / close[t] - 1)
    return labels, exits, rets


@pytest.mark.parametrize(
    ("h", "pt", "sl", "vol_window"),
    [
        (24, 0.02, 0.01, None),
        (6, 0.005, 0.005, None),
        (12, 2.0, 1.5, 48),
        (24, None, 0.03, None),
        (10, 1.0, None, 24),
    ],
)
def test_triple_barrier_equals_loop(h, pt, sl, vol_window) -> None:
    c = candles().iloc[:2500]
    got = triple_barrier(c, h, pt, sl, vol_window=vol_window)
    labels, exits, rets = _triple_barrier_loop(c, h, pt, sl, vol_window)
    assert list(got.columns) == ["label", "t1", "ret"] and got.index.equals(c.index)
    assert_array_equal(got["label"].to_numpy(), np.array(labels))
    want_t1 = pd.DatetimeIndex([c.index[e] if e is not None else pd.NaT for e in exits])
    assert_array_equal(got["t1"].isna().to_numpy(), want_t1.isna())
    assert (got["t1"].dropna().to_numpy() == want_t1.dropna().to_numpy()).all()
    np.testing.assert_allclose(got["ret"].to_numpy(), np.array(rets), rtol=1e-9, atol=1e-15)
    assert set(np.unique(got["label"].dropna())) <= {-1.0, 0.0, 1.0}
    assert got["label"].iloc[-h:].isna().all() and got["label"].iloc[-h - 1 :].notna().iloc[0]


def _bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(rows), freq="1h", tz="UTC", name="time")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index, dtype="float64")
    df["volume"] = 1.0
    return df


def test_triple_barrier_same_bar_counts_the_stop() -> None:
    c = _bars(
        [
            (100, 100, 100, 100),
            (100, 101, 99.5, 100),  # touches neither of +-2 %
            (100, 103, 97, 100),  # touches both: the stop counts
            (100, 100, 100, 100),
        ]
    )
    got = triple_barrier(c, 3, pt=0.02, sl=0.02)
    assert got["label"].iloc[0] == -1.0
    assert got["t1"].iloc[0] == c.index[2]
    assert got["ret"].iloc[0] == pytest.approx(-0.02)
    assert got["label"].iloc[1:].isna().all() and got["t1"].iloc[1:].isna().all()
    # touching exactly at the barrier counts; only the take-profit: +1 at the barrier price
    c2 = _bars([(100, 100, 100, 100), (100, 102, 99, 101), (101, 101, 101, 101)])
    tp = triple_barrier(c2, 2, pt=0.02, sl=0.02)
    assert tp["label"].iloc[0] == 1.0 and tp["ret"].iloc[0] == pytest.approx(0.02)
    timeout = triple_barrier(c2, 2, pt=0.05, sl=0.05)
    assert timeout["label"].iloc[0] == 0.0 and timeout["ret"].iloc[0] == pytest.approx(0.01)
    assert timeout["t1"].iloc[0] == c2.index[2]


def test_label_argument_errors() -> None:
    c = candles().iloc[:50]
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        forward_returns(c["close"], 0)
    with pytest.raises(ValueError, match="threshold"):
        direction(c["close"], 1, threshold=-0.1)
    with pytest.raises(ValueError, match="pt must be a positive number"):
        triple_barrier(c, 5, pt=-1, sl=0.01)
    with pytest.raises(ValueError, match="vol_window must be an integer >= 2"):
        triple_barrier(c, 5, pt=1, sl=1, vol_window=1)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(min_value=2, max_value=3000), h=st.integers(min_value=1, max_value=30))
def test_labels_at_t_use_only_bars_t_to_t_plus_h(k: int, h: int) -> None:
    """Labels at t on candles[:k] equal those on all candles whenever t + h < k - 1 (and are NaN past the data)."""
    c = candles().iloc[:3000]
    part, whole = c.iloc[:k], c
    known = max(k - 1 - h, 0)  # t + h < k - 1
    for f in (
        lambda x: forward_returns(x["close"], h).to_frame(),
        lambda x: direction(x["close"], h, 0.001).to_frame(),
        lambda x: triple_barrier(x, h, 0.01, 0.01),
        lambda x: triple_barrier(x, h, 1.0, 1.0, vol_window=20),
    ):
        a, b = f(part), f(whole).iloc[:k]
        pd.testing.assert_frame_equal(a.iloc[:known], b.iloc[:known])
        assert a.iloc[max(k - h, 0) :].isna().all().all()  # the horizon runs past the prefix


# --- gaps ---------------------------------------------------------------------------------------------------------------


def _with_gaps() -> tuple[pd.DataFrame, list[tuple[int, int]]]:
    """The first 200 sample hours with gaps of 1, 3 and 10 bars planted at positions 20, 50 and 120."""
    c = candles().iloc[:200]
    planted = [(20, 1), (50, 3), (120, 10)]
    drop = [i for p, k in planted for i in range(p, p + k)]
    out = c.drop(c.index[drop])
    out.attrs = dict(c.attrs)
    return out, planted


def test_find_gaps_on_planted_gaps() -> None:
    c, planted = _with_gaps()
    full = candles().iloc[:200]
    gaps = find_gaps(c, "1h")
    assert list(gaps.columns) == ["start", "end", "missing_bars"]
    assert gaps["missing_bars"].tolist() == [k for _, k in planted]
    assert gaps["start"].tolist() == [full.index[p] for p, _ in planted]
    assert gaps["end"].tolist() == [full.index[p + k] for p, k in planted]  # half-open [start, end)
    assert find_gaps(c).equals(gaps)  # timeframe from attrs
    assert find_gaps(full, "1h").empty


def test_fill_gaps_ffill_within_limit() -> None:
    c, _ = _with_gaps()
    out = fill_gaps(c, "1h", rule="ffill", max_gap_bars=3, on_long_gap="keep")
    assert out["filled"].dtype == bool and out["filled"].sum() == 4
    assert len(out) == len(c) + 4 and out.attrs["symbol"] == "BTC/USDT"
    assert (out.dtypes[["open", "high", "low", "close", "volume"]] == np.float64).all()
    gaps = find_gaps(out, "1h")
    assert gaps["missing_bars"].tolist() == [10]  # the long gap is kept
    ins = out[out["filled"]]
    for t, row in ins.iterrows():
        prev_close = c["close"][c.index < t].iloc[-1]
        assert row["open"] == row["high"] == row["low"] == row["close"] == prev_close
        assert row["volume"] == 0.0
    pd.testing.assert_frame_equal(out[~out["filled"]].drop(columns="filled"), c)


def test_fill_gaps_refuses_long_gap_naming_it() -> None:
    c, _ = _with_gaps()
    with pytest.raises(
        ValueError,
        match=r"gap of 10 missing 1h bar\(s\) from 2024-01-06T00:00:00Z to 2024-01-06T10:00:00Z \(exclusive\) "
        r"is longer than max_gap_bars=3",
    ):
        fill_gaps(c, "1h", rule="ffill", max_gap_bars=3)
    with pytest.raises(ValueError, match="needs max_gap_bars"):
        fill_gaps(c, "1h", rule="ffill")
    with pytest.raises(ValueError, match=r"unknown gap rule 'fill' \(did you mean 'ffill'"):
        fill_gaps(c, "1h", rule="fill")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"did you mean 'split'"):
        fill_gaps(c, "1h", max_gap_bars=3, on_long_gap="splt")  # type: ignore[arg-type]


def test_fill_gaps_none_keep_and_split() -> None:
    c, _ = _with_gaps()
    same = fill_gaps(c, "1h")  # rule 'none', no limit: every gap left, nothing raised
    assert not same["filled"].any()
    pd.testing.assert_frame_equal(same.drop(columns="filled"), c)
    segments = fill_gaps(c, "1h", rule="ffill", max_gap_bars=1, on_long_gap="split")
    assert isinstance(segments, list) and len(segments) == 3
    assert [int(s["filled"].sum()) for s in segments] == [1, 0, 0]
    assert sum(len(s) - int(s["filled"].sum()) for s in segments) == len(c)
    for s in segments:
        assert find_gaps(s, "1h").empty and s.attrs["timeframe"] == "1h"
    every = fill_gaps(c, "1h", max_gap_bars=0, on_long_gap="split")
    assert [len(s) for s in every] == [20, 29, 67, 70]


def test_gap_input_errors() -> None:
    c = candles().iloc[:10]
    shifted = c.copy()
    shifted.index = shifted.index.insert(5, shifted.index[4] + pd.Timedelta(minutes=30)).delete(6)
    with pytest.raises(
        ValueError, match=r"row 6 \(2024-01-01T04:30:00Z\).*not a multiple of the timeframe 1h"
    ):
        find_gaps(shifted, "1h")
    bare = c.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="no timeframe given"):
        find_gaps(bare)


def test_drop_filler_bars() -> None:
    c, _ = _with_gaps()
    filled = fill_gaps(c, "1h", rule="ffill", max_gap_bars=3, on_long_gap="keep")
    back, n = drop_filler_bars(filled)
    assert n == 4
    pd.testing.assert_frame_equal(back.drop(columns="filled"), c)
    # a zero-volume bar whose prices move is not filler; a flat bar with volume is not either
    moved = c.copy()
    moved.iloc[5, moved.columns.get_loc("volume")] = 0.0
    moved.iloc[6, :4] = moved.iloc[6]["close"]
    kept, n = drop_filler_bars(moved)
    assert n == 0 and len(kept) == len(c)
