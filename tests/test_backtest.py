"""Backtests against an independent plain-Python loop, sweep kernels against the vectorbt engine,
lookahead detection, grids and walk-forward optimisation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import sample_candles

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.optimize import optimize, walk_forward_splits
from workbench.backtest.sweep import parse_grid, sweep
from workbench.strategies import ParamError, Params, Strategy, get_strategy, strategy_names
from workbench.strategies.lookahead import check_lookahead


def load(sym: str, n: int | None = 3000) -> pd.DataFrame:
    return sample_candles(sym, n=n)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return load("BTC")


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    return load("ETH")


# ----------------------------------------------------------------------------------- the reference loop


def reference(
    frames: dict[str, pd.DataFrame], targets: pd.DataFrame, cfg: BacktestConfig, split: bool = True
):
    """The documented conventions, written independently as a plain loop over bars (and assets).

    Returns the equity per bar and the list of fills (time, symbol, units, price, fee).
    """
    syms = list(frames)
    n = len(next(iter(frames.values())))
    tgt = targets[syms].fillna(0.0).to_numpy()
    if cfg.direction == "long":
        tgt = np.maximum(tgt, 0.0)
    elif cfg.direction == "short":
        tgt = np.minimum(tgt, 0.0)
    scale = cfg.size / len(syms) if (split and cfg.size_type == "fraction") else cfg.size
    tgt = tgt * scale
    o = np.column_stack([frames[s]["open"].to_numpy() for s in syms])
    c = np.column_stack([frames[s]["close"].to_numpy() for s in syms])
    cash, units = cfg.init_cash, np.zeros(len(syms))
    prev = np.zeros(len(syms))
    equity, fills = [], []
    for t in range(n):
        eff = tgt[t - 1] if t > 0 else np.zeros(len(syms))
        changed = [j for j in range(len(syms)) if eff[j] != prev[j]]
        if changed:
            value = cash + float(np.sum(units * o[t]))
            wanted = {}
            for j in changed:
                goal = eff[j] * value / o[t, j] if cfg.size_type == "fraction" else eff[j] / o[t, j]
                wanted[j] = goal - units[j]
            for j in sorted(changed, key=lambda j: wanted[j] >= 0):  # sells first, then buys
                d = wanted[j]
                if d > 0:
                    p = o[t, j] * (1 + cfg.slippage)
                    if d * p * (1 + cfg.fees) > cash:
                        d = cash / (p * (1 + cfg.fees)) if cash > 0 else 0.0
                    fee = d * p * cfg.fees
                    cash -= d * p + fee
                elif d < 0:
                    p = o[t, j] * (1 - cfg.slippage)
                    fee = -d * p * cfg.fees
                    cash += -d * p - fee
                else:
                    continue
                units[j] += d
                fills.append((frames[syms[j]].index[t], syms[j], d, p, fee))
            prev = eff.copy()
        equity.append(cash + float(np.sum(units * c[t])))
    return np.array(equity), fills


CONFIGS = [
    BacktestConfig(),
    BacktestConfig(fees=0.001, slippage=0.0005),
    BacktestConfig(fees=0.002, slippage=0.001, size=0.5),
    BacktestConfig(fees=0.001, direction="both"),
    BacktestConfig(fees=0.001, slippage=0.0002, direction="short", size=0.7),
    BacktestConfig(fees=0.001, size_type="notional", size=2500.0, direction="both"),
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.direction}-{c.size_type}-{c.size}-{c.fees}-{c.slippage}"
)
@pytest.mark.parametrize("name", ["sma_cross", "bollinger", "breakout"])
def test_engine_equals_plain_loop(btc, name, cfg) -> None:
    strat = get_strategy(name)()
    res = run_backtest(btc, strat, cfg)
    tg = pd.DataFrame({"BTC/USDT": strat.target(btc)})
    eq, fills = reference({"BTC/USDT": btc}, tg, cfg)
    np.testing.assert_allclose(res.equity.to_numpy(), eq, rtol=1e-9)
    assert math.isclose(res.equity.iloc[-1], eq[-1], rel_tol=1e-9)
    orders = res.orders
    assert len(orders) == len(fills)
    np.testing.assert_allclose(orders["size"].to_numpy(), [abs(f[2]) for f in fills], rtol=1e-9)
    np.testing.assert_allclose(orders["price"].to_numpy(), [f[3] for f in fills], rtol=1e-12)
    np.testing.assert_allclose(orders["fees"].to_numpy(), [f[4] for f in fills], rtol=1e-9)
    assert (orders["time"].to_numpy() == np.array([f[0] for f in fills])).all()


def test_all_in_buys_cash_over_price_times_one_plus_fee(btc) -> None:
    cfg = BacktestConfig(fees=0.001, slippage=0.0005)
    res = run_backtest(btc, get_strategy("sma_cross")(), cfg)
    first = res.orders.iloc[0]
    assert first["side"] == "buy"
    price = btc.loc[first["time"], "open"] * 1.0005
    assert math.isclose(first["size"], 10_000 / (price * 1.001), rel_tol=1e-12)


def test_multi_asset_shared_cash_equals_plain_loop(btc, eth) -> None:
    cfg = BacktestConfig(fees=0.001, slippage=0.0005)
    frames = {"BTC/USDT": btc, "ETH/USDT": eth}
    strat = get_strategy("sma_cross")(fast=20, slow=60)
    res = run_backtest(frames, strat, cfg)
    tg = pd.DataFrame({s: strat.target(df) for s, df in frames.items()})
    eq, fills = reference(frames, tg, cfg)
    np.testing.assert_allclose(res.equity.to_numpy(), eq, rtol=1e-9)
    assert len(res.orders) == len(fills)
    assert set(res.trades["symbol"]) == set(frames)


def test_pairs_strategy_trades_both_legs_with_shared_cash(btc, eth) -> None:
    frames = {"BTC/USDT": btc, "ETH/USDT": eth}
    strat = get_strategy("pairs_zscore")(window=100)
    cfg = BacktestConfig(fees=0.001, direction="both")
    res = run_backtest(frames, strat, cfg)
    tg = strat.target(frames)
    eq, _ = reference(frames, tg, cfg, split=False)
    np.testing.assert_allclose(res.equity.to_numpy(), eq, rtol=1e-9)
    # both legs are traded at once, in opposite directions when the hedge ratio is positive
    both = tg.dropna()
    live = both[(both != 0).all(axis=1)]
    assert len(live) > 0
    pos_beta = live[live.iloc[:, 1] * live.iloc[:, 0] != 0]
    assert (np.sign(pos_beta.iloc[:, 0]) != np.sign(pos_beta.iloc[:, 1])).mean() > 0.5


# ----------------------------------------------------------------------------------- sweeps


GRIDS = {
    "sma_cross": ["fast=5:30:5", "slow=20:100:40"],
    "breakout": ["window=10:40:15", "exit_window=5:20:15"],
    "tsmom": ["lookback=24:168:72", "threshold=0,0.02"],
    "bollinger": ["window=10:40:15", "entry=1.5,2.0", "exit=0,0.5"],
    "rsi_reversion": ["period=7,14", "lower=25,30", "upper=70,75"],
}


@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[3], CONFIGS[4]], ids=["long", "both", "short"])
@pytest.mark.parametrize("name", list(GRIDS))
def test_sweep_kernels_equal_the_vectorbt_engine(btc, name, cfg) -> None:
    cls = get_strategy(name)
    res = sweep(btc, cls, parse_grid(GRIDS[name], cls), cfg)
    assert res.engine == f"numba:{name}"
    for _, row in res.table.iterrows():
        params = cls.make_params({k: row[k] for k in cls.Params.model_fields}).model_dump()
        bt = run_backtest(btc, cls(**params), cfg)
        assert math.isclose(bt.equity.iloc[-1], row["final_equity"], rel_tol=1e-9), params
        assert bt.metrics["n_trades"] == row["n_trades"], params
        assert math.isclose(bt.metrics["max_drawdown"], row["max_drawdown"], rel_tol=1e-9, abs_tol=1e-12)
        if np.isfinite(row["sharpe"]):
            assert math.isclose(bt.metrics["sharpe"], row["sharpe"], rel_tol=1e-9)


def test_generic_kernel_for_other_strategies(btc) -> None:
    class Contrarian(Strategy):
        name = "contrarian_test"

        class Params(Params):
            k: int = 3

        def target(self, data, features=None):
            r = data["close"].pct_change(self.params.k)
            return -np.sign(r)

    res = sweep(btc, Contrarian, {"k": [2, 5]}, CONFIGS[3])
    assert res.engine == "numba:generic"
    for _, row in res.table.iterrows():
        bt = run_backtest(btc, Contrarian(k=int(row["k"])), CONFIGS[3])
        assert math.isclose(bt.equity.iloc[-1], row["final_equity"], rel_tol=1e-9)


def test_grid_parsing() -> None:
    cls = get_strategy("sma_cross")
    assert parse_grid(["fast=5:20:5", "slow=50,100"], cls) == {"fast": [5, 10, 15, 20], "slow": [50, 100]}
    assert parse_grid(["entry=1.5:2.5:0.5"], get_strategy("bollinger")) == {"entry": [1.5, 2.0, 2.5]}
    with pytest.raises(ParamError, match=r"unknown parameter 'fastt' \(did you mean 'fast'\?\)"):
        parse_grid(["fastt=5:10:5"], cls)
    with pytest.raises(ParamError, match="start:stop:step"):
        parse_grid(["fast=5:10"], cls)
    res = sweep(load("BTC", 800), cls, {"fast": [10, 60], "slow": [50]})
    assert (res.n_combinations, res.n_valid) == (2, 1)  # fast=60 >= slow=50 is skipped


# ----------------------------------------------------------------------------------- lookahead


class Peeking(Strategy):
    name = "peeking_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        return np.sign(data["close"].shift(-1) - data["close"])  # tomorrow's close: a bug


class FullSampleNorm(Strategy):
    name = "fullsample_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        c = data["close"]
        return np.sign((c - c.mean()) / c.std())  # uses the mean of the whole sample


@pytest.mark.parametrize("name", strategy_names())
def test_every_builtin_passes_the_lookahead_check(btc, eth, name) -> None:
    cls = get_strategy(name)
    feats = None
    if name == "ml":  # the ml strategy trades on given predictions
        feats = pd.DataFrame(
            {"prediction": np.random.default_rng(0).uniform(0, 1, len(btc))}, index=btc.index
        )
    rep = check_lookahead(
        cls(), btc if cls.assets == 1 else {"BTC/USDT": btc, "ETH/USDT": eth}, n_cuts=12, features=feats
    )
    assert rep.ok, rep.summary()


@pytest.mark.parametrize("cls", [Peeking, FullSampleNorm])
def test_lookahead_check_catches_peeking(btc, cls) -> None:
    rep = check_lookahead(cls(), btc, n_cuts=8)
    assert not rep.ok and "LOOKAHEAD" in rep.summary()


# ----------------------------------------------------------------------------------- optimisation


def test_walk_forward_splits_never_overlap() -> None:
    for mode in ("expanding", "rolling"):
        for tr, te in walk_forward_splits(1000, 4, mode):
            assert tr.stop == te.start and te.stop > te.start
    with pytest.raises(ValueError, match="too few"):
        walk_forward_splits(30, 5)


def test_optimize_walk_forward_is_out_of_sample_and_resumable(btc, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    r = optimize(btc, "sma_cross", trials=12, folds=2, storage=url)
    assert len(r.folds) == 2
    for f in r.folds:
        assert pd.Timestamp(f.train[1]) < pd.Timestamp(f.test[0])
        assert 0 <= f.dsr <= 1
    assert math.isclose(r.gap, r.is_sharpe - r.oos_sharpe)
    assert r.oos_equity.index[0] == pd.Timestamp(r.folds[0].test[0])
    import optuna

    n_before = sum(len(optuna.load_study(study_name=f.study, storage=url).trials) for f in r.folds)
    r2 = optimize(btc, "sma_cross", trials=12, folds=2, storage=url)  # resumes: nothing left to run
    n_after = sum(len(optuna.load_study(study_name=f.study, storage=url).trials) for f in r2.folds)
    assert n_before == n_after
    assert [f.best_params for f in r.folds] == [f.best_params for f in r2.folds]


def test_result_json_has_metrics_equity_and_trades(btc, tmp_path) -> None:
    import json

    res = run_backtest(btc, get_strategy("sma_cross")(), BacktestConfig(fees=0.001))
    res.save_json(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    closed = sum(t["status"] == "closed" for t in d["trades"])
    assert d["metrics"]["n_trades"] == closed and d["metrics"]["n_open_trades"] == len(res.trades) - closed
    assert len(d["equity"]) == len(btc) and len(d["trades"]) == len(res.trades)
    t0 = d["trades"][0]
    assert {"entry_time", "exit_time", "entry_price", "exit_price", "size", "fees", "pnl"} <= set(t0)
