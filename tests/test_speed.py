"""The fast paths of issue 10 give the numbers of the plain ones: the simulator's idle-bar skip against a bar
step on every bar, the numpy metrics against ``compute_metrics``, the lazy ``BacktestResult`` against its
frames, and a ``workbench backtest`` process that does not import ccxt or vectorbt. (Speed itself is measured
in ``benchmarks/bench_speed.py``, never asserted here.)"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, sample_candles

from workbench.backtest.engine import BacktestConfig, BacktestResult, equity_pairs, run_backtest
from workbench.backtest.metrics import compute_metrics, epoch_ns, metrics_from_arrays, trade_stats
from workbench.sim.portfolio import bar_step, bars_held, new_state, simulate_portfolio, units_held
from workbench.strategies.momentum import SmaCross

NAN = float("nan")


def same(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), (k, a[k], b[k])


def every_bar(o, h, lo, c, eff, notional, fee, slip, cash, sl, tp, trailing, capacity):
    """The simulator without the idle-bar skip: ``bar_step`` on every bar, marked as simulate_portfolio does."""
    n, k = c.shape
    equity, held = np.empty(n), np.empty((n, k))
    fills, trades = np.empty((capacity, 6)), np.empty((capacity + k, 11))
    nf = nt = 0
    st = new_state(k)
    for t in range(n):
        cash, nf, nt = bar_step(
            t, o[t], h[t], lo[t], eff[t], cash, st, notional, fee, slip, sl, tp, trailing, fills, nf, trades, nt,
            True,
        )  # fmt: skip
        held[t] = st[:, 0]
        v = cash
        for j in range(k):
            v += st[j, 0] * c[t, j]
        equity[t] = v
    return equity, held, fills[:nf], trades[:nt]


@pytest.mark.parametrize(
    ("sl", "tp", "trailing", "notional"),
    [(NAN, NAN, False, False), (0.02, 0.04, False, False), (0.03, NAN, True, False), (NAN, NAN, False, True)],
)
def test_idle_bar_skip_changes_nothing(sl: float, tp: float, trailing: bool, notional: bool) -> None:
    """Targets that hold for stretches (and NaN ones), two assets, long and short: the same fills, trades,
    units and equity as a bar step on every bar."""
    rng = np.random.default_rng(5)
    n, k = 1500, 2
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, k)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.01, (n, k)))
    lo = np.minimum(o, c) * (1 - rng.uniform(0, 0.01, (n, k)))
    eff = np.repeat(rng.choice([-0.5, 0.0, 0.5, NAN], size=(n // 50, k)), 50, axis=0)
    if notional:
        eff = eff * 4000
    args = (notional, 0.001, 0.0005, 10_000.0, sl, tp, trailing, 4 * n)
    equity, fills, trades = simulate_portfolio(o, h, lo, c, eff, *args)
    want = every_bar(o, h, lo, c, eff, *args)
    assert len(want[2]) > 20
    # the units held are rebuilt from the fills (units_held), to the bit
    for g, w in zip((equity, units_held(fills, n, k), fills), want[:3], strict=True):
        np.testing.assert_array_equal(g, w)
    closed = len(want[3])
    np.testing.assert_array_equal(trades[:closed], want[3])
    assert (trades[closed:, 9] == 0).all()  # then the trades still open at the end


def curve(n: int, seed: int, freq: str = "1h", gaps: bool = False) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC")
    if gaps:
        idx = idx[np.sort(rng.choice(n, n * 3 // 4, replace=False))]
    v = 1000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(idx))))
    return pd.Series(v, idx)


@pytest.mark.parametrize("gaps", [False, True])
def test_metrics_from_arrays_equals_compute_metrics(gaps: bool) -> None:
    eq = curve(3000, 1, gaps=gaps)
    eq.iloc[[10, 500]] = np.nan
    bench = curve(3000, 2)
    trades = pd.DataFrame({"pnl": [5.0, -2.0, 0.0, np.nan, 7.0], "status": ["closed"] * 4 + ["open"]})
    pos = pd.Series(np.r_[np.zeros(1000), np.ones(2000)][: len(eq)], eq.index)
    kw = dict(turnover_notional=1e6, n_trials=7, trials_sharpe_var=1e-5, risk_free=0.02)
    want = compute_metrics(eq, trades, position=pos, benchmark=bench, **kw)
    ok = eq.notna()
    got = metrics_from_arrays(
        eq[ok].to_numpy(),
        epoch_ns(eq[ok].index),
        trades=trade_stats(trades["pnl"].to_numpy(), (trades["status"] == "open").to_numpy()),
        exposure=float(np.mean(pos.to_numpy() != 0)),
        benchmark=bench.reindex(eq[ok].index).to_numpy(),
        **kw,
    )
    same(got, want)
    assert not math.isnan(got["beta"]) and got["n_open_trades"] == 1.0


def test_epoch_ns_whatever_the_unit() -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    assert (epoch_ns(idx.as_unit("s")) == epoch_ns(idx.as_unit("ns"))).all()
    assert epoch_ns(idx)[0] == pd.Timestamp("2024-01-01", tz="UTC").value


@pytest.mark.parametrize(
    "cfg",
    [BacktestConfig(), BacktestConfig(direction="both", sl_stop=0.02, tp_stop=0.05, slippage=0.001)],
)
def test_lazy_result_equals_its_frames(cfg: BacktestConfig) -> None:
    """The metrics built from the simulator's arrays equal ``compute_metrics`` of the result's own frames (the
    way they were computed before), and each lazy attribute is built once."""
    df = sample_candles()
    bench = df["close"] * 1.5
    r = run_backtest(df, SmaCross(fast=8, slow=30), cfg, start="2024-03-01", benchmark=bench, n_trials=3,
                     trials_sharpe_var=2e-4)  # fmt: skip
    step = pd.Timedelta(1, "h")
    curve_ = pd.concat([pd.Series([cfg.init_cash], index=[r.equity.index[0] - step]), r.equity])
    want = compute_metrics(
        curve_,
        r.trades,
        position=r.positions.abs().sum(axis=1),
        turnover_notional=float((r.orders["size"] * r.orders["price"]).sum()),
        benchmark=bench.reindex(r.equity.index),
        n_trials=3,
        trials_sharpe_var=2e-4,
    )
    same(r.metrics, want)
    assert r.metrics is r.metrics and r.trades is r.trades and r.orders is r.orders
    assert r.positions.index.equals(r.equity.index) and list(r.positions.columns) == r.symbols
    assert r.trades["entry_time"].is_monotonic_increasing
    assert r.candles[r.symbols[0]].index.equals(r.equity.index)
    assert len(r.to_dict()["fills"]) == len(r.orders)


def test_result_built_from_frames_and_assigned() -> None:
    """``BacktestResult`` keeps its public attributes: given directly, assigned, and required when no simulator
    records stand behind them."""
    r = run_backtest(sample_candles(n=500), SmaCross(fast=5, slow=20))
    kw = dict(strategy=r.strategy, params=r.params, config=r.config, symbols=r.symbols, timeframe=r.timeframe,
              equity=r.equity, targets=r.targets)  # fmt: skip
    direct = BacktestResult(**kw, positions=r.positions, trades=r.trades, orders=r.orders, metrics=r.metrics)
    assert direct.metrics == r.metrics and direct.trades is r.trades and direct.candles == {}
    direct.metrics = {"sharpe": 1.0}
    assert direct.metrics == {"sharpe": 1.0}
    with pytest.raises(TypeError, match="positions, trades, orders, metrics"):
        BacktestResult(**kw)


def test_exchange_ids_without_ccxt_equal_ccxt() -> None:
    code = textwrap.dedent(
        """
        import sys
        from workbench.cli.app import _exchange_ids
        ids = _exchange_ids()
        assert "ccxt" not in sys.modules
        import ccxt
        assert ids == list(ccxt.exchanges), "the ids read from ccxt's source differ from ccxt.exchanges"
        print(len(ids))
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) > 50


@pytest.mark.parametrize(
    "index",
    [
        pd.date_range("2024-01-01", periods=500, freq="5min", tz="UTC"),
        pd.date_range("2024-01-01 00:00:00.25", periods=50, freq="250ms", tz="UTC"),  # not whole seconds
        pd.date_range(
            "2024-03-30 22:00", periods=50, freq="1h", tz="Europe/Berlin"
        ),  # not UTC (a DST change)
        pd.date_range("2024-01-01", periods=50, freq="1h"),  # naive
        pd.DatetimeIndex(["2024-01-01", "NaT", "2024-01-02"], tz="UTC"),
    ],
)
def test_equity_pairs_equal_the_one_by_one_form(index: pd.DatetimeIndex) -> None:
    """The whole-index ISO times and strict-JSON values of a stored curve are those of ``Timestamp.isoformat()``
    and a per-value cleaning (NaN -> null, inf -> "inf"), on every kind of index."""
    rng = np.random.default_rng(0)
    values = 1000 + rng.random(len(index))
    values[1::7] = np.nan
    values[2::11] = np.inf
    values[3::13] = -np.inf
    eq = pd.Series(values, index=index)
    want = [
        (
            None if pd.isna(t) else pd.Timestamp(t).isoformat(),
            None if np.isnan(v) else ("inf" if v == np.inf else "-inf" if v == -np.inf else float(v)),
        )
        for t, v in eq.items()
    ]
    assert equity_pairs(eq) == want
    finite = eq.fillna(1.0).replace([np.inf, -np.inf], 2.0)
    assert equity_pairs(finite) == [(t, float(v)) for (t, _), v in zip(want, finite, strict=True)]


@pytest.mark.slow
def test_backtest_command_imports_neither_ccxt_nor_vectorbt(tmp_path) -> None:
    """``workbench backtest`` (and a bad parameter's one-line error) in a process that never loads ccxt or
    vectorbt: they cost 1-2 s each at start-up and the backtest uses neither."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}
    wb = [sys.executable, "-m", "workbench.cli", "--config", str(ROOT / "config"), "--home", str(home)]
    subprocess.run([*wb, "init", "--sample"], check=True, capture_output=True, env=env, cwd=ROOT, timeout=300)
    code = textwrap.dedent(
        """
        import sys
        from workbench.cli import main
        sys.argv = ["workbench", *sys.argv[1:]]
        try:
            main()
        except SystemExit as e:
            print("exit", e.code)
        print("loaded:", [m for m in ("ccxt", "vectorbt") if m in sys.modules])
        """
    )
    args = ["--config", str(ROOT / "config"), "--home", str(home), "backtest", "--strategy", "sma_cross",
            "-e", "binance", "-s", "BTC/USDT", "-t", "1h"]  # fmt: skip
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300)  # fmt: skip
    assert "Sharpe ratio" in p.stdout and "loaded: []" in p.stdout, p.stdout + p.stderr
    bad = subprocess.run([sys.executable, "-c", code, *args, "-p", "fast=0"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)  # fmt: skip
    assert "exit 1" in bad.stdout and "error:" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_bars_held_counts_what_units_held_holds() -> None:
    """The exposure metric counts the bars with a position from the fills alone: the same count as the units
    rebuilt bar by bar, with several assets, flips, partial closes and NaN units (flat)."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 4))
        m = int(rng.integers(0, 30))
        idx = np.sort(rng.integers(0, n, m)).astype(float)
        units = rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], m)
        fills = np.column_stack([idx, rng.integers(0, k, m), units, np.ones(m), np.zeros(m), np.zeros(m)])
        if trial % 5 == 0 and m:
            fills[rng.integers(0, m), 2] = np.nan  # NaN units count as flat from there on
        # some positions closed exactly: a fill of minus what the asset holds
        held = units_held(fills, n, k)
        want = int(np.any(np.abs(held) > 0, axis=1).sum())
        assert bars_held(fills, n, k) == want, (trial, fills, held)
    assert bars_held(np.empty((0, 6)), 10, 2) == 0
    closed = np.array(
        [[2, 0, 1.0, 1, 0, 0], [5, 0, -1.0, 1, 0, 0], [5, 1, 3.0, 1, 0, 0], [8, 1, -3.0, 1, 0, 0]]
    )
    assert bars_held(closed, 10, 2) == 6  # bars 2..7


def test_the_numba_cache_is_keyed_on_every_compiled_module(tmp_path) -> None:
    """numba checks a cached function against its own file only: a sweep kernel cached before a change to the fill
    rules (another file) would run the old rules. The cache folder is keyed on the sources of every module with
    compiled functions, so a change to any of them starts a new cache; the list of those modules is complete."""
    import re
    import shutil

    import workbench
    from workbench.backtest import kernels

    pkg = ROOT / "workbench"
    compiled = {
        p.relative_to(pkg).as_posix()
        for p in pkg.rglob("*.py")
        if re.search(r"^\s*@(numba\.)?n?jit\b", p.read_text(encoding="utf-8"), re.M)
    }
    assert compiled == set(workbench.COMPILED_MODULES)
    folder = os.environ["NUMBA_CACHE_DIR"]
    assert kernels.simulate._cache._cache_path.startswith(folder + os.sep)  # where the kernels are cached

    def cache_dir(tree: Path) -> str:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env.update(PYTHONPATH=str(tree), XDG_CACHE_HOME=str(tmp_path / "cache"))
        code = "import os, workbench; print(os.environ['NUMBA_CACHE_DIR'])"
        p = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True,
                           timeout=120, check=True)  # fmt: skip
        return p.stdout.strip()

    copy = tmp_path / "tree"
    shutil.copytree(pkg, copy / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    first = cache_dir(copy)
    assert first.startswith(str(tmp_path / "cache" / "workbench" / "numba")) and cache_dir(copy) == first
    fills = copy / "workbench" / "sim" / "fills.py"
    fills.write_text(fills.read_text(encoding="utf-8") + "\n# a change to the fill rules\n", encoding="utf-8")
    second = cache_dir(copy)
    assert second != first  # a new cache for every compiled function, the kernels of kernels.py included
    assert Path(first).is_dir() and Path(second).is_dir()  # the previous one is kept (a few are)
    # a NUMBA_CACHE_DIR the user set is theirs, also in a child of a process that imported workbench (as
    # benchmarks/bench_backtest.py runs one with an empty cache)
    code = "import os, workbench; print(os.environ['NUMBA_CACHE_DIR'])"
    for inherited in (False, True):
        env = {**os.environ, "PYTHONPATH": str(copy), "NUMBA_CACHE_DIR": str(tmp_path / "mine")}
        if not inherited:
            env.pop("_WORKBENCH_NUMBA_CACHE", None)
        assert "_WORKBENCH_NUMBA_CACHE" in env or not inherited
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.stdout.strip() == str(tmp_path / "mine"), inherited


def test_the_simulator_grows_its_records_past_any_capacity() -> None:
    """The fill and trade records grow when more fills come than the capacity asked for (NaN prices can make a
    stop fill on every bar): the same records as with room to spare, never a write past the end."""
    rng = np.random.default_rng(9)
    n, k = 400, 2
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, k)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h, lo = np.maximum(o, c) * 1.01, np.minimum(o, c) * 0.99
    o[50:60, 0] = np.nan  # opens missing for a while: NaN units, a stop "fill" on every bar
    eff = np.repeat(rng.choice([-0.5, 0.0, 0.5], size=(n // 4, k)), 4, axis=0)
    args = (False, 0.001, 0.0005, 10_000.0, 0.01, 0.02, False)
    roomy = simulate_portfolio(o, h, lo, c, eff, *args, 10 * n)
    tight = simulate_portfolio(o, h, lo, c, eff, *args, 1)
    assert len(roomy[1]) > 50
    for a, b in zip(roomy, tight, strict=True):
        np.testing.assert_array_equal(a, b)
    # the orders of the bars without an open waited for the first bar with one: no fill at a NaN price
    fills = roomy[1]
    assert np.isfinite(fills).all() and not ((fills[:, 0] >= 50) & (fills[:, 0] < 60) & (fills[:, 1] == 0)
                                             & (fills[:, 5] == 0)).any()  # fmt: skip
    assert np.isfinite(roomy[0][60:]).all()  # marked at every close again once the opens are back


def test_an_infinite_target_is_an_error_naming_the_bar() -> None:
    """A strategy that divides by zero gets an error naming the symbol and the bar (it once overran the fill
    records: a crash), not a backtest."""
    import workbench.strategies.base as base

    class Broken(base.Strategy):
        name = "broken_inf"

        class Params(base.Params):
            pass

        def target(self, data, features=None):
            out = pd.Series(0.0, index=data.index)
            out.iloc[10:] = -np.inf
            return out

    df = sample_candles()
    with pytest.raises(ValueError, match=r"'broken_inf': target -inf for .* at " + str(df.index[10])[:10]):
        run_backtest(df, Broken(), BacktestConfig(direction="short", sl_stop=0.05))
