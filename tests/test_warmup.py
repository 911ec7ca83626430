"""Strategies' declared indicators and warm-up (a buffer of ``warmup()`` closed candles gives the full history's
decision), the sweep's fused kernels chosen by declaration, and the backtest's default costs from trading.yml.

All on the bundled real Binance data: BTC/USDT and ETH/USDT 1h (5,980 bars) and BTC/USDT 5m (71,769 bars)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from conftest import ROOT, sample_candles

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.sweep import sweep
from workbench.config import TradingConfig
from workbench.strategies import Params, Strategy, get_strategy, strategy_names
from workbench.strategies.indicators import I, SweepKernel, smoothing_bars
from workbench.strategies.momentum import SmaCross


def load(sym: str, tf: str = "1h") -> pd.DataFrame:
    return sample_candles(sym, tf)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return load("BTC")


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    return load("ETH")


@pytest.fixture(scope="module")
def btc5m() -> pd.DataFrame:
    return load("BTC", "5m")


# several parameter sets per single-asset built-in, the defaults first, long lookbacks included
SINGLE = {
    "sma_cross": [{}, {"fast": 5, "slow": 20}, {"fast": 50, "slow": 200}],
    "breakout": [{}, {"window": 100, "exit_window": 50}, {"window": 5, "exit_window": 100}],
    "tsmom": [{}, {"lookback": 24, "threshold": 0.01}, {"lookback": 500}],
    "bollinger": [{}, {"window": 100, "entry": 2.5}, {"window": 10, "entry": 1.5, "exit": 0.5}],
    "rsi_reversion": [{}, {"period": 30}, {"period": 14, "lower": 20, "upper": 80}, {"period": 2}],
}


def test_every_builtin_is_covered() -> None:
    assert set(SINGLE) | {"pairs_zscore", "ml"} == set(strategy_names())


def cut_points(n: int, first: int, k: int, seed: int) -> list[int]:
    """``k`` cut points in [first, n): evenly spread, and as many drawn at random."""
    rng = np.random.default_rng(seed)
    even = np.linspace(first, n - 1, k // 2, dtype=int)
    return sorted({*map(int, even), *map(int, rng.integers(first, n, k - k // 2))})


def last(x: pd.Series | pd.DataFrame) -> np.ndarray:
    return np.atleast_1d(x.iloc[-1].to_numpy(dtype="float64") if isinstance(x, pd.DataFrame) else x.iloc[-1])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("tf", ["1h", "5m"])
@pytest.mark.parametrize("name", list(SINGLE))
def test_warmup_buffer_gives_the_full_history_decision(name, tf, btc, btc5m) -> None:
    data = btc if tf == "1h" else btc5m
    cls = get_strategy(name)
    for i, params in enumerate(SINGLE[name]):
        s = cls(**params)
        w = s.warmup()
        bad = []
        for t in cut_points(len(data), w - 1, 80, seed=i):
            buffered = last(s.target(data.iloc[t - w + 1 : t + 1]))
            full = last(s.target(data.iloc[: t + 1]))
            if not same(buffered, full):
                bad.append((str(data.index[t]), buffered.tolist(), full.tolist()))
        assert not bad, f"{name} {params} warmup {w}: {bad[:3]}"


@pytest.mark.parametrize("name", ["bollinger", "breakout"])
def test_stateful_strategies_need_their_state_memory(name, btc) -> None:
    """The test above can fail: with only the indicators' warm-up, a held position is forgotten (RSI's own
    smoothing warm-up, ~27x the period, already holds its state's memory)."""
    s = get_strategy(name)()
    short = max(i.bars for i in s.indicators().values())
    assert short < s.warmup()
    full = s.target(btc).to_numpy(dtype="float64")
    differ = sum(
        not same(last(s.target(btc.iloc[t - short + 1 : t + 1])), full[t : t + 1])
        for t in cut_points(len(btc), s.warmup(), 200, seed=1)
    )
    assert differ > 0


@pytest.mark.parametrize("name", list(SINGLE))
def test_each_declared_indicator_needs_its_bars(name, btc) -> None:
    """An indicator computed on its ``bars`` closed candles equals the full history's within 1e-9 relative
    (RSI: Wilder's smoothing needs ~27x the period on top of the first value)."""
    for params in SINGLE[name]:
        for label, ind in get_strategy(name)(**params).indicators().items():
            full = ind(btc)
            full = full if isinstance(full, tuple) else (full,)
            for t in cut_points(len(btc), ind.bars - 1, 30, seed=2):
                part = ind(btc.iloc[t - ind.bars + 1 : t + 1])
                part = part if isinstance(part, tuple) else (part,)
                for f, p in zip(full, part, strict=True):
                    assert np.isfinite(p[-1]), (name, params, label, t)
                    assert math.isclose(p[-1], f[t], rel_tol=1e-9, abs_tol=1e-12), (name, params, label, t)


def test_rsi_seed_is_forgotten_only_after_the_smoothing_warmup(btc) -> None:
    close = btc["close"].to_numpy(dtype="float64")
    full = talib.RSI(close, 14)
    worst = max(abs(talib.RSI(close[t - 14 : t + 1], 14)[-1] - full[t]) for t in range(3000, 3100))
    assert worst > 1e-3  # one period is far from enough
    assert smoothing_bars(1 / 14) == math.ceil(math.log(1e-12) / math.log(13 / 14))
    assert smoothing_bars(1.0) == 0
    with pytest.raises(ValueError):
        smoothing_bars(0.0)


@pytest.mark.parametrize("params", [{}, {"window": 50, "entry": 1.5, "exit": 0.25}])
def test_pairs_warmup(params, btc, eth) -> None:
    s = get_strategy("pairs_zscore")(**params)
    w = s.warmup()
    data = {"BTC/USDT": btc, "ETH/USDT": eth}
    for t in cut_points(len(btc), w - 1, 40, seed=3):
        buffered = last(s.target({k: v.iloc[t - w + 1 : t + 1] for k, v in data.items()}))
        full = last(s.target({k: v.iloc[: t + 1] for k, v in data.items()}))
        # the weights too (1 : beta, the hedge ratio held from the entry bar), bit for bit: its windows are
        # summed afresh, not with running sums that carry the whole history's rounding
        assert same(buffered, full), (t, buffered, full)


def test_ml_strategy_warmup(btc) -> None:
    """Predictions are features: the decision reads the current bar's prediction only (warm-up 1)."""
    r = np.log(btc["close"]).diff(24)
    pred = pd.DataFrame({"prediction": 1 / (1 + np.exp(-r / r.std()))}, index=btc.index)
    pred.iloc[::97] = np.nan  # bars without a prediction are flat
    s = get_strategy("ml")(upper=0.55, lower=0.45)
    w = s.warmup()
    assert w == 1
    decisions = set()
    for t in cut_points(len(btc), 0, 200, seed=4):
        buffered = last(s.target(btc.iloc[t - w + 1 : t + 1], pred))
        full = last(s.target(btc.iloc[: t + 1], pred))
        assert same(buffered, full), t
        decisions.add(float(full[0]))
    assert decisions == {-1.0, 0.0, 1.0}


def test_undeclared_strategy_has_no_guessed_warmup() -> None:
    class Bare(Strategy):
        name = "bare_test"

        class Params(Params):
            k: int = 3

        def target(self, data, features=None):
            return np.sign(data["close"].pct_change(self.params.k))

    with pytest.raises(NotImplementedError, match="bare_test"):
        Bare().warmup()


def test_indicator_frame_names_the_lines(btc) -> None:
    f = SmaCross(fast=10, slow=50).indicator_frame(btc)
    assert list(f.columns) == ["fast", "slow"] and f.index.equals(btc.index)
    close = btc["close"].to_numpy(dtype="float64")
    assert np.allclose(f["slow"], talib.SMA(close, 50), equal_nan=True)
    b = get_strategy("breakout")().indicator_frame(btc)
    assert list(b.columns) == ["entry.upper", "entry.lower", "exit.upper", "exit.lower"]
    ind = get_strategy("bollinger")().indicators()
    assert ind["bands"].overlay and not ind["z"].overlay


# ---------------------------------------------------------------------- sweeps by declaration


CALLS: list[int] = []


def counted_ema(close: np.ndarray, timeperiod: int) -> np.ndarray:
    CALLS.append(timeperiod)
    return talib.EMA(close, timeperiod)


class EmaCross(Strategy):
    """Not a built-in: a cross of two EMAs declares the fused cross kernel and gets it, no name switch."""

    name = "ema_cross_test"
    sweep_kernel = SweepKernel("cross", ("fast", "slow"))

    class Params(Params):
        fast: int = 10
        slow: int = 50

    def indicators(self):
        p = self.params
        return {
            "fast": I(counted_ema, "close", bars=p.fast, timeperiod=p.fast),
            "slow": I(counted_ema, "close", bars=p.slow, timeperiod=p.slow),
        }

    def warmup(self) -> int:
        return self.params.slow + smoothing_bars(2 / (self.params.slow + 1))

    def target(self, data, features=None):
        from workbench.strategies.signals import cross_state

        ind = self.indicators()
        return pd.Series(cross_state(ind["fast"](data), ind["slow"](data)), index=data.index)


def test_a_new_strategy_gets_a_fused_kernel_by_declaration(btc) -> None:
    cfg = BacktestConfig(fees=0.001, slippage=0.0005, direction="both")
    CALLS.clear()
    res = sweep(btc, EmaCross, {"fast": [5, 10, 20], "slow": [20, 40]}, cfg)
    assert res.engine == "numba:ema_cross_test" and res.n_valid == 6
    # each distinct period once for the tables ({5, 10, 20, 40}), then the check of the first combination
    assert sorted(CALLS[:4]) == [5, 10, 20, 40] and len(CALLS) == 6
    for _, row in res.table.iterrows():
        bt = run_backtest(btc, EmaCross(fast=int(row["fast"]), slow=int(row["slow"])), cfg)
        assert math.isclose(bt.equity.iloc[-1], row["final_equity"], rel_tol=1e-9)
        assert bt.metrics["n_trades"] == row["n_trades"]


def test_a_kernel_that_does_not_reproduce_the_target_is_refused(btc) -> None:
    class Inverted(SmaCross):  # inherits the cross kernel but trades the other way
        name = "inverted_test"

        def target(self, data, features=None):
            return -super().target(data)

    with pytest.raises(RuntimeError, match=r"inverted_test.*does not reproduce target"):
        sweep(btc, Inverted, {"fast": [5], "slow": [20, 50]}, BacktestConfig(direction="both"))

    class Unknown(SmaCross):
        name = "unknown_kernel_test"
        sweep_kernel = SweepKernel("nope", ("fast", "slow"))

    with pytest.raises(ValueError, match=r"unknown_kernel_test.*'nope'"):
        sweep(btc, Unknown, {"fast": [5], "slow": [20]})


# ---------------------------------------------------------------------- default costs


def test_backtest_costs_from_trading_config() -> None:
    t = TradingConfig(fees={"maker": 0.0002, "taker": 0.0025}, slippage_bps=12)
    cfg = BacktestConfig.from_trading(t)
    assert cfg.fees == 0.0025 and math.isclose(cfg.slippage, 0.0012)
    over = BacktestConfig.from_trading(t, fees=0.0, slippage=None, direction="both")
    assert over.fees == 0.0 and math.isclose(over.slippage, 0.0012) and over.direction == "both"
    with pytest.raises(ValueError):
        BacktestConfig.from_trading(t, fess=0.1)  # unknown keys stay errors


def test_cli_backtest_default_costs_come_from_trading_yml(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    text = (cfg / "trading.yml").read_text()
    text = text.replace("taker: 0.001", "taker: 0.0025").replace("slippage_bps: 5", "slippage_bps: 12")
    (cfg / "trading.yml").write_text(text)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}

    def wb(*args: str) -> None:
        cmd = [sys.executable, "-m", "workbench.cli", "--config", str(cfg), "--home", str(home), *args]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert p.returncode == 0, f"{cmd}\n{p.stdout}\n{p.stderr}"

    p = subprocess.run(  # the sample is found beside the checkout's config
        [sys.executable, "-m", "workbench.cli", "--config", str(ROOT / "config"), "--home", str(home), "init",
         "--sample"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    base = ["backtest", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "1h"]
    wb(*base, "--json", str(tmp_path / "a.json"))
    wb(*base, "--fees", "0", "--json", str(tmp_path / "b.json"))
    a = json.loads((tmp_path / "a.json").read_text())["config"]
    b = json.loads((tmp_path / "b.json").read_text())["config"]
    assert a["fees"] == 0.0025 and math.isclose(a["slippage"], 0.0012)
    assert b["fees"] == 0.0 and math.isclose(b["slippage"], 0.0012)
