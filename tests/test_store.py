"""The store on its own: idempotent upserts, exact round trips, atomic commits, schema versions, SQL."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data.store import Store, StoreError, merge_intervals, subtract_intervals
from workbench.types import CandleValidationError

T0 = 1_704_067_200_000
M5 = 300_000


def candles(n: int, start: int = T0, step: int = M5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "ts": start + step * np.arange(n, dtype="int64"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.uniform(0, 10, n),
        }
    )


def read(store: Store, symbol: str = "X/USDT", tf: str = "5m") -> pd.DataFrame:
    t = store.read_table(store.key("candles", "test", symbol, tf)).to_pandas()
    return t.reset_index(drop=True)


def test_upsert_is_idempotent_and_new_rows_win(tmp_path) -> None:
    s = Store(tmp_path)
    k = s.key("candles", "test", "X/USDT", "5m")
    df = candles(20_000)
    r1 = s.write(k, df)
    assert (r1.rows_added, r1.version) == (20_000, 1)
    r2 = s.write(k, df)
    assert (r2.rows_added, r2.parts_written, r2.version) == (0, 0, 1)  # nothing changed, nothing rewritten
    changed = df.iloc[100:110].copy()
    changed["volume"] = 999.0
    r3 = s.write(k, changed)
    assert r3.rows_updated == 10 and r3.parts_written == 1
    got = read(s)
    assert len(got) == 20_000 and (got["volume"].iloc[100:110] == 999.0).all()
    pd.testing.assert_frame_equal(
        got.drop(index=range(100, 110)), df.drop(index=range(100, 110)), check_exact=True
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(st.tuples(st.integers(0, 30_000), st.integers(1, 3_000)), min_size=1, max_size=6),
    shuffle=st.booleans(),
)
def test_any_sequence_of_overlapping_writes_equals_the_union(tmp_path_factory, chunks, shuffle) -> None:
    s = Store(tmp_path_factory.mktemp("s"))
    k = s.key("candles", "test", "X/USDT", "5m")
    full = candles(33_000)
    expect = set()
    for start, n in chunks:
        part = full.iloc[start : start + n]
        if shuffle:
            part = part.sample(frac=1, random_state=start)
        s.write(k, part)
        expect |= set(range(start, min(start + n, len(full))))
    got = read(s)
    want = full.iloc[sorted(expect)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_time_range_reads_are_half_open(tmp_path) -> None:
    s = Store(tmp_path)
    s.write(s.key("candles", "test", "X/USDT", "1h"), candles(24 * 90, step=3_600_000))
    c = s.candles("test", "X/USDT", "1h", start="2024-02-01", end="2024-02-02")
    assert len(c) == 24 and str(c.index[0]) == "2024-02-01 00:00:00+00:00"
    assert c.index.tz is not None and str(c.index.tz) == "UTC" and c.index.is_monotonic_increasing
    assert list(c.dtypes.unique()) == [np.dtype("float64")]
    assert c.attrs == {"exchange": "test", "symbol": "X/USDT", "timeframe": "1h"}


def test_bad_candles_are_rejected_before_anything_is_written(tmp_path) -> None:
    s = Store(tmp_path)
    k = s.key("candles", "test", "X/USDT", "5m")
    df = candles(1000)
    df.loc[500, "close"] = np.nan
    with pytest.raises(CandleValidationError, match=r"row 501 .*'close' is not a finite number"):
        s.write(k, df)
    df = candles(1000)
    df.loc[10, "ts"] += 1
    with pytest.raises(CandleValidationError, match="not aligned to the 5m grid"):
        s.write(k, df)
    assert s.series() == [] and s.manifest(k) is None


def test_missing_series_error_lists_what_is_there(tmp_path) -> None:
    s = Store(tmp_path)
    s.write(s.key("candles", "test", "X/USDT", "5m"), candles(10))
    with pytest.raises(StoreError, match=r"no candles stored for test Y/USDT 5m; stored: X/USDT 5m"):
        s.candles("test", "Y/USDT", "5m")


def test_newer_schema_is_refused(tmp_path) -> None:
    Store(tmp_path)
    (tmp_path / "store.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store(tmp_path)


def test_retired_parts_are_collected_after_the_grace_period(tmp_path) -> None:
    s = Store(tmp_path, gc_grace_s=0)
    k = s.key("candles", "test", "X/USDT", "5m")
    s.write(k, candles(100))
    s.write(k, candles(100, seed=1))  # rewrites the same month
    s.write(k, candles(100, seed=2))
    parts = list((s.series_dir(k) / "parts").iterdir())
    assert [p.name for p in parts] == [s.manifest(k)["parts"][0]["file"]]


def test_sql_views_cover_all_series_and_kinds(tmp_path) -> None:
    s = Store(tmp_path)
    s.write(s.key("candles", "test", "X/USDT", "5m"), candles(100))
    s.write(s.key("candles", "test", "Y/USDT:USDT", "5m"), candles(50))
    df = s.sql("SELECT symbol, count(*) AS n, min(time) AS t FROM candles GROUP BY symbol ORDER BY symbol")
    assert df["symbol"].tolist() == ["X/USDT", "Y/USDT:USDT"] and df["n"].tolist() == [100, 50]
    assert str(df["t"].iloc[0]).startswith("2024-01-01 00:00:00")
    assert s.sql("SELECT count(*) AS n FROM trades")["n"].iloc[0] == 0
    with pytest.raises(StoreError, match="SQL error"):
        s.sql("SELECT nope FROM candles")


def test_intervals() -> None:
    assert merge_intervals([(5, 7), (0, 5), (10, 12), (11, 11)]) == [(0, 7), (10, 12)]
    assert subtract_intervals((0, 20), [(3, 5), (10, 12)]) == [(0, 3), (5, 10), (12, 20)]
    assert subtract_intervals((4, 6), [(0, 5)]) == [(5, 6)]
    assert subtract_intervals((0, 5), [(0, 5)]) == []
