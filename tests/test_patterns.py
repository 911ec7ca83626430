"""Chart patterns (workbench.features.patterns): causality, known synthetic shapes, evaluation arithmetic, real data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.features import atr, candle_patterns
from workbench.features.patterns import (
    CHART_PATTERNS,
    PatternConfig,
    detect_chart_patterns,
    evaluate_patterns,
    pattern_features,
    swings,
)
from workbench.types import candles_from_frame

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "binance" / "BTCUSDT_1h.csv.gz"
WICK = 0.05


def make_candles(close: np.ndarray, wick: float = WICK) -> pd.DataFrame:
    """Candles whose open is the previous close and whose wicks stick out ``wick`` beyond the body."""
    close = np.asarray(close, dtype="float64")
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + wick,
            "low": np.minimum(open_, close) - wick,
            "close": close,
            "volume": np.ones(len(close)),
        },
        index=index,
    )


def path(*points: tuple[int, float]) -> np.ndarray:
    """Piecewise-linear closes through (bar, price) waypoints."""
    x, y = zip(*points, strict=True)
    return np.interp(np.arange(x[-1] + 1), x, y)


def mirror(c: pd.DataFrame, k: float = 400.0) -> pd.DataFrame:
    """The same candles upside down (price -> k - price): tops become bottoms, ATR is unchanged."""
    return pd.DataFrame(
        {"open": k - c.open, "high": k - c.low, "low": k - c.high, "close": k - c.close, "volume": c.volume},
        index=c.index,
    )


def random_walk(seed: int, n: int = 700) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    hi = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    lo = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="time")
    return pd.DataFrame({"open": open_, "high": hi, "low": lo, "close": close, "volume": 1.0}, index=index)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return candles_from_frame(pd.read_csv(SAMPLE), timeframe="1h", source="sample")


def rows(det: pd.DataFrame, name: str) -> pd.DataFrame:
    return det[det.pattern == name]


def at(c: pd.DataFrame, bar: int) -> pd.Timestamp:
    return c.index[bar]


# ------------------------------------------------------------------------------------------- causality

CONFIGS = [
    PatternConfig(),
    PatternConfig(breakout=True),
    PatternConfig(order=3, tol=0.3, breakout=True, triangle_swings=5),
    PatternConfig(atr_mult=2.5, breakout=True),
    PatternConfig(pct=0.02),
]


@pytest.fixture(scope="module")
def btc_head(btc: pd.DataFrame) -> pd.DataFrame:
    return btc.iloc[:1500]


@pytest.fixture(scope="module")
def full_runs(btc_head: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {i: detect_chart_patterns(btc_head, cfg) for i, cfg in enumerate(CONFIGS)}


def test_full_runs_are_not_trivial(full_runs: dict[int, pd.DataFrame]) -> None:
    for det in full_runs.values():
        assert det.pattern.nunique() >= 5, det.pattern.value_counts()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 1500), which=st.integers(0, len(CONFIGS) - 1))
def test_detect_is_causal(
    btc_head: pd.DataFrame, full_runs: dict[int, pd.DataFrame], k: int, which: int
) -> None:
    full = full_runs[which]
    part = detect_chart_patterns(btc_head.iloc[:k], CONFIGS[which])
    expected = full[full.time < btc_head.index[k]] if k < len(btc_head) else full
    pd.testing.assert_frame_equal(part, expected.reset_index(drop=True))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 700), zig=st.booleans())
def test_detect_swings_features_causal_on_random_walks(seed: int, k: int, zig: bool) -> None:
    c = random_walk(seed)
    kw = {"atr_mult": 2.0} if zig else {"order": 4}
    cut = c.index[k] if k < len(c) else c.index[-1] + pd.Timedelta("1h")
    for fn in (detect_chart_patterns, swings):
        full = fn(c, **kw)
        pd.testing.assert_frame_equal(fn(c.iloc[:k], **kw), full[full.time < cut].reset_index(drop=True))
    feats = pattern_features(c, **kw)
    pd.testing.assert_frame_equal(pattern_features(c.iloc[:k], **kw), feats.iloc[:k])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 1500))
def test_features_and_swings_causal_on_btc(btc_head: pd.DataFrame, k: int) -> None:
    feats = pattern_features(btc_head, breakout=True)
    pd.testing.assert_frame_equal(pattern_features(btc_head.iloc[:k], breakout=True), feats.iloc[:k])
    for kw in ({"order": 5}, {"atr_mult": 3.0}, {"pct": 0.015}):
        full = swings(btc_head, **kw)
        exp = full[full.time < btc_head.index[k]] if k < len(btc_head) else full
        pd.testing.assert_frame_equal(swings(btc_head.iloc[:k], **kw), exp.reset_index(drop=True))


# --------------------------------------------------------------------------------------------- swings


def test_fractal_swings_confirmed_order_bars_later(btc: pd.DataFrame) -> None:
    sw = swings(btc, order=5)
    assert len(sw) > 100
    assert (sw.bar - sw.pivot_bar == 5).all()
    assert (sw.time == btc.index[sw.bar]).all() and (sw.pivot_time == btc.index[sw.pivot_bar]).all()
    hi, lo = btc.high.to_numpy(), btc.low.to_numpy()
    for r in sw.itertuples():
        i = r.pivot_bar
        if r.kind == "high":
            assert r.price == hi[i] > hi[i - 5 : i].max() and hi[i] >= hi[i + 1 : i + 6].max()
        else:
            assert r.price == lo[i] < lo[i - 5 : i].min() and lo[i] <= lo[i + 1 : i + 6].min()


def test_zigzag_confirms_at_first_reversal_bar(btc: pd.DataFrame) -> None:
    sw = swings(btc, pct=0.02)
    kinds = sw.kind.to_numpy()
    assert len(sw) > 20 and (kinds[1:] != kinds[:-1]).all()  # alternating
    hi, lo = btc.high.to_numpy(), btc.low.to_numpy()
    for r in sw.iloc[1:].itertuples():
        p, t = r.pivot_bar, r.bar
        assert p < t
        if r.kind == "high":
            assert r.price == hi[p] == hi[p : t + 1].max()
            assert hi[p] - lo[t] >= 0.02 * hi[p] and (hi[p] - lo[p + 1 : t] < 0.02 * hi[p]).all()
        else:
            assert r.price == lo[p] == lo[p : t + 1].min()
            assert hi[t] - lo[p] >= 0.02 * lo[p] and (hi[p + 1 : t] - lo[p] < 0.02 * lo[p]).all()


def test_zigzag_atr_threshold(btc: pd.DataFrame) -> None:
    sw = swings(btc, atr_mult=3.0)
    a = atr(btc).to_numpy()
    hi, lo = btc.high.to_numpy(), btc.low.to_numpy()
    for r in sw.itertuples():
        move = hi[r.pivot_bar] - lo[r.bar] if r.kind == "high" else hi[r.bar] - lo[r.pivot_bar]
        assert move >= 3.0 * a[r.bar]


# --------------------------------------------------------------------------------- synthetic patterns

DOUBLE_TOP = path((0, 100), (40, 120), (55, 110), (70, 120.2), (90, 105))
HEAD_SHOULDERS = path((0, 100), (30, 115), (40, 108), (55, 125), (70, 108.3), (80, 115.2), (100, 100))
ASC_TRIANGLE = path((0, 100), (25, 110), (35, 103), (50, 110.1), (60, 106), (80, 118))
SYM_TRIANGLE = path((0, 100), (25, 115), (40, 100), (55, 111), (68, 104), (78, 107), (95, 92))
FLAG = np.r_[100 + 0.3 * (np.arange(31) % 2), path((0, 100), (8, 110), (16, 107.5))[1:], 110.5, 110.6]


@pytest.mark.parametrize("flip", [False, True])
def test_double_top(flip: bool) -> None:
    c = make_candles(DOUBLE_TOP)
    c = mirror(c) if flip else c
    name, d = ("double_bottom", 1) if flip else ("double_top", -1)
    det = detect_chart_patterns(c)
    r = rows(det, name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, 75) and r.direction.iloc[0] == d
    assert r.start.iloc[0] == at(c, 40) and r.end.iloc[0] == at(c, 70)
    neck = c.low.iloc[55] if not flip else c.high.iloc[55]
    assert r.level.iloc[0] == neck
    assert set(det.pattern) == {name}
    # with breakout: the first close beyond the neckline after the confirmation
    det = detect_chart_patterns(c, breakout=True)
    beyond = np.flatnonzero(d * (c.close.to_numpy() - neck) > 0)
    bar = beyond[beyond >= 75][0]
    r = rows(det, name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, bar) and bool(r.breakout.iloc[0])
    assert r.target.iloc[0] == pytest.approx(neck + d * r.height.iloc[0])


@pytest.mark.parametrize("flip", [False, True])
def test_head_and_shoulders(flip: bool) -> None:
    c = make_candles(HEAD_SHOULDERS)
    c = mirror(c) if flip else c
    name, d = ("inverse_head_and_shoulders", 1) if flip else ("head_and_shoulders", -1)
    r = rows(detect_chart_patterns(c), name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, 85) and r.direction.iloc[0] == d
    assert (r.start.iloc[0], r.end.iloc[0]) == (at(c, 30), at(c, 80))
    # the head above both shoulders by less than the margin: no head and shoulders
    low_head = path((0, 100), (30, 115), (40, 108), (55, 116.0), (70, 108.3), (80, 115.2), (100, 100))
    c2 = make_candles(low_head)
    c2 = mirror(c2) if flip else c2
    assert rows(detect_chart_patterns(c2), name).empty
    assert len(rows(detect_chart_patterns(c2, margin=0.05), name)) == 1
    # breakout: the first close beyond the neckline (the line through the troughs) from the confirmation on
    det = detect_chart_patterns(c, breakout=True)
    troughs = (c.high if flip else c.low).to_numpy()[[40, 70]]
    bars = np.arange(len(c))
    neck = troughs[0] + (troughs[1] - troughs[0]) * (bars - 40) / 30
    bar = next(t for t in range(85, len(c)) if d * (c.close.iloc[t] - neck[t]) > 0)
    r = rows(det, name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, bar) and r.level.iloc[0] == pytest.approx(neck[bar])


@pytest.mark.parametrize("flip", [False, True])
def test_ascending_triangle(flip: bool) -> None:
    c = make_candles(ASC_TRIANGLE)
    c = mirror(c) if flip else c
    name, d = ("descending_triangle", -1) if flip else ("ascending_triangle", 1)
    r = rows(detect_chart_patterns(c), name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, 65) and r.direction.iloc[0] == d
    assert (r.start.iloc[0], r.end.iloc[0]) == (at(c, 25), at(c, 60))
    det = detect_chart_patterns(c, breakout=True)
    tops = (c.low if flip else c.high).to_numpy()[[25, 50]]
    line = tops[0] + (tops[1] - tops[0]) * (np.arange(len(c)) - 25) / 25
    bar = next(t for t in range(65, len(c)) if d * (c.close.iloc[t] - line[t]) > 0)
    r = rows(det, name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, bar) and r.direction.iloc[0] == d


@pytest.mark.parametrize("flip", [False, True])
def test_symmetrical_triangle_breakout(flip: bool) -> None:
    c = make_candles(SYM_TRIANGLE)
    c = mirror(c) if flip else c
    d = 1 if flip else -1
    lows = (c.high if flip else c.low).to_numpy()[[40, 68]]
    line = lows[0] + (lows[1] - lows[0]) * (np.arange(len(c)) - 40) / 28
    bar = next(t for t in range(73, len(c)) if d * (c.close.iloc[t] - line[t]) > 0)
    assert bar > 73  # the breakout comes after the triangle is known (its last swing confirmed at 73)
    for breakout in (False, True):
        r = rows(detect_chart_patterns(c, breakout=breakout), "symmetrical_triangle")
        assert len(r) == 1 and r.time.iloc[0] == at(c, bar) and r.direction.iloc[0] == d
        assert r.level.iloc[0] == pytest.approx(line[bar])


@pytest.mark.parametrize("flip", [False, True])
def test_flag(flip: bool) -> None:
    c = make_candles(FLAG)
    c = mirror(c) if flip else c
    name, d = ("bear_flag", -1) if flip else ("bull_flag", 1)
    det = detect_chart_patterns(c)
    r = rows(det, name)
    assert len(r) == 1 and r.time.iloc[0] == at(c, 47) and r.direction.iloc[0] == d
    assert r.end.iloc[0] == at(c, 46) and r.p2.iloc[0] == (c.low if flip else c.high).iloc[38]
    assert set(det.pattern) == {name}
    # a pole that is too weak (in ATRs) is no flag
    assert rows(detect_chart_patterns(c, pole_atr=50), name).empty
    # the flag must not retrace more than max_retrace of the pole
    assert rows(detect_chart_patterns(c, max_retrace=0.1), name).empty


@pytest.mark.parametrize("slope", [0.5, -0.5, 0.0])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_no_patterns_on_a_straight_line(slope: float, cfg: PatternConfig) -> None:
    c = make_candles(100 + slope * np.arange(400))
    assert detect_chart_patterns(c, cfg).empty
    assert swings(c, order=cfg.order, atr_mult=cfg.atr_mult, pct=cfg.pct).empty
    assert (pattern_features(c, cfg, candlesticks=False) == 0).all().all()


def test_empty_and_tiny_inputs() -> None:
    c = make_candles(DOUBLE_TOP)
    for k in (0, 1, 3):
        part = c.iloc[:k]
        assert detect_chart_patterns(part).empty
        assert list(detect_chart_patterns(part).columns) == list(detect_chart_patterns(c).columns)
        assert swings(part).empty
        assert len(pattern_features(part)) == k
    with pytest.raises(ValueError, match="unknown pattern parameter"):
        detect_chart_patterns(c, tolerance=0.1)
    with pytest.raises(ValueError, match="not both"):
        swings(c, atr_mult=2.0, pct=0.01)
    with pytest.raises(ValueError, match="unknown chart pattern"):
        detect_chart_patterns(c, patterns=["cup_and_handle"])


# ------------------------------------------------------------------------------------------- features


def test_pattern_features_columns(btc: pd.DataFrame) -> None:
    det = detect_chart_patterns(btc)
    f = pattern_features(btc)
    cdl = candle_patterns(btc)
    assert list(f.columns) == [*CHART_PATTERNS, *("cdl_" + cdl.columns)]
    assert (f.dtypes == "int8").all() and f.index.equals(btc.index)
    for name in CHART_PATTERNS:
        r = rows(det, name)
        assert (f.loc[f[name] != 0, name].index.unique() == pd.DatetimeIndex(r.time.unique())).all()
        assert set(np.unique(f[name])) <= {-1, 0, 1}
    pd.testing.assert_frame_equal(
        f[["cdl_engulfing"]], np.sign(cdl[["engulfing"]]).astype("int8").add_prefix("cdl_")
    )


# ----------------------------------------------------------------------------------------- evaluation


def test_evaluate_matches_pandas(btc: pd.DataFrame) -> None:
    split = "2024-06-15"
    ev = evaluate_patterns(btc, horizons=(1, 6), split=split)
    cut = int(btc.index.searchsorted(pd.Timestamp(split, tz="UTC")))
    n = len(btc)
    fwd = {h: btc.close.shift(-h) / btc.close - 1 for h in (1, 6)}
    det = detect_chart_patterns(btc)
    dt = det[det.pattern == "double_top"]
    cases = {
        "double_top": (btc.index.get_indexer(dt.time), dt.direction.to_numpy()),
        "cdl_engulfing": (
            np.flatnonzero(candle_patterns(btc, ["engulfing"])["engulfing"].to_numpy()),
            np.sign(candle_patterns(btc, ["engulfing"])["engulfing"].to_numpy()),
        ),
        "all_bars": (np.arange(n), np.ones(n)),
    }
    cases["cdl_engulfing"] = (cases["cdl_engulfing"][0], cases["cdl_engulfing"][1][cases["cdl_engulfing"][0]])
    for name, (bars, dirs) in cases.items():
        for h in (1, 6):
            r = pd.Series(dirs * fwd[h].iloc[bars].to_numpy(), index=bars)
            base = fwd[h]
            for period, keep, bkeep in (
                ("in_sample", (r.index + h < cut), np.arange(n) + h < cut),
                (
                    "out_of_sample",
                    (r.index >= cut) & (r.index + h < n),
                    (np.arange(n) >= cut) & (np.arange(n) + h < n),
                ),
            ):
                x = r[keep]
                row = ev[(ev.pattern == name) & (ev.horizon == h) & (ev.period == period)].iloc[0]
                assert row["count"] == len(x) > 5
                assert row.hit_rate == pytest.approx((x > 0).mean())
                assert row["mean"] == pytest.approx(x.mean())
                assert row["median"] == pytest.approx(x.median())
                assert row.t_stat == pytest.approx(x.mean() / x.std() * np.sqrt(len(x)))
                b = base[bkeep]
                long = (dirs[keep] > 0).mean()
                assert row.base_hit_rate == pytest.approx(long * (b > 0).mean() + (1 - long) * (b < 0).mean())
                assert row.edge == pytest.approx(row.hit_rate - row.base_hit_rate)
                se = np.sqrt(row.base_hit_rate * (1 - row.base_hit_rate) / len(x))
                assert name == "all_bars" or row.edge_z == pytest.approx(row.edge / se)


def test_evaluate_default_split_is_70_30(btc: pd.DataFrame) -> None:
    ev = evaluate_patterns(btc, horizons=(1,), candlesticks=["doji"])
    base = ev[ev.pattern == "all_bars"].set_index("period")["count"]
    n, cut = len(btc), int(len(btc) * 0.7)
    assert base["in_sample"] == cut - 1 and base["out_of_sample"] == n - cut - 1
    assert set(ev.kind) == {"base", "chart", "candle"}
    assert set(ev.pattern[ev.kind == "candle"]) == {"cdl_doji"}
    at_cut = btc.index[cut]
    for split in (0.7, at_cut, at_cut.isoformat(), int(at_cut.value // 1_000_000)):
        pd.testing.assert_frame_equal(
            evaluate_patterns(btc, horizons=(1,), split=split, candlesticks=["doji"]), ev
        )


def test_real_sample_is_fast(btc: pd.DataFrame) -> None:
    t0 = time.perf_counter()
    det = detect_chart_patterns(btc, breakout=True)
    feats = pattern_features(btc)
    ev = evaluate_patterns(btc)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5, elapsed
    assert set(det.pattern) == set(CHART_PATTERNS)
    assert len(feats) == len(btc)
    assert (ev[ev.kind == "chart"].groupby("period")["count"].sum() > 0).all()
