"""Stops, costs and the one simulator: the documented rules (engine.py rule 6, sim/fills.py) written again as a
plain-Python loop, checked against ``run_backtest`` and the sweep kernels **with fees and slippage switched on**,
plus one constructed case per rule and the vectorbt export."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import sample_candles

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.sweep import parse_grid, sweep
from workbench.strategies import Params, Strategy, get_strategy

# ----------------------------------------------------------------------------------- the reference loop


def reference_with_stops(frame: pd.DataFrame, target: pd.Series, cfg: BacktestConfig):
    """One asset, written from the docs only: orders at the open first, then the stops over the rest of the
    bar (entry bar included), gap -> open, stop-loss before take-profit, market fills with slippage and fees.

    Returns the equity per bar and the fills as (time, signed units, price, fee, reason).
    """
    tg = target.fillna(0.0).to_numpy(dtype=float)
    if cfg.direction == "long":
        tg = np.maximum(tg, 0.0)
    elif cfg.direction == "short":
        tg = np.minimum(tg, 0.0)
    tg = tg * cfg.size
    o, h, lo, c = (frame[x].to_numpy(dtype=float) for x in ("open", "high", "low", "close"))
    idx = frame.index
    sl = cfg.sl_stop
    tp = cfg.tp_stop
    cash, units, prev = cfg.init_cash, 0.0, 0.0
    entry = best = 0.0
    equity, fills = [], []

    def fill(px: float, d: float, reason: str) -> None:
        nonlocal cash, units, entry, best
        price = px * (1 + cfg.slippage) if d > 0 else px * (1 - cfg.slippage)
        if d > 0 and d * price * (1 + cfg.fees) > cash:
            d = cash / (price * (1 + cfg.fees)) if cash > 0 else 0.0
        if d == 0:
            return
        fee = abs(d) * price * cfg.fees
        cash -= d * price + fee
        new = units + d
        if units == 0 or (np.sign(new) != np.sign(units) and new != 0):
            entry = best = price  # a new position (or the rest of a flip)
        elif abs(new) > abs(units):
            entry = (entry * abs(units) + price * abs(d)) / abs(new)
        units = new
        fills.append((idx[t], d, price, fee, reason))

    for t in range(len(o)):
        eff = tg[t - 1] if t > 0 else 0.0
        if eff != prev:
            prev = eff
            goal = eff / o[t] if cfg.size_type == "notional" else eff * (cash + units * o[t]) / o[t]
            if goal != units:
                fill(o[t], goal - units, "signal")
        if units != 0 and (sl is not None or tp is not None):
            ref = best if cfg.trailing else entry
            hit = None
            if units > 0:
                if sl is not None and o[t] <= ref * (1 - sl):
                    hit = (o[t], "stop_loss")
                elif sl is not None and lo[t] <= ref * (1 - sl):
                    hit = (ref * (1 - sl), "stop_loss")
                elif tp is not None and o[t] >= entry * (1 + tp):
                    hit = (o[t], "take_profit")
                elif tp is not None and h[t] >= entry * (1 + tp):
                    hit = (entry * (1 + tp), "take_profit")
            else:
                if sl is not None and o[t] >= ref * (1 + sl):
                    hit = (o[t], "stop_loss")
                elif sl is not None and h[t] >= ref * (1 + sl):
                    hit = (ref * (1 + sl), "stop_loss")
                elif tp is not None and o[t] <= entry * (1 - tp):
                    hit = (o[t], "take_profit")
                elif tp is not None and lo[t] <= entry * (1 - tp):
                    hit = (entry * (1 - tp), "take_profit")
            if hit is not None:
                fill(hit[0], -units, hit[1])
            elif cfg.trailing:
                best = max(best, h[t]) if units > 0 else min(best, lo[t])
        equity.append(cash + units * c[t])
    return np.array(equity), fills


def load(sym: str, n: int = 3000) -> pd.DataFrame:
    return sample_candles(sym, n=n)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return load("BTC")


STOP_CONFIGS = [
    BacktestConfig(fees=0.001, slippage=0.0005, sl_stop=0.03),
    BacktestConfig(fees=0.001, slippage=0.0005, sl_stop=0.01, tp_stop=0.03),
    BacktestConfig(fees=0.002, slippage=0.001, sl_stop=0.02, tp_stop=0.05, direction="both"),
    BacktestConfig(fees=0.001, slippage=0.0005, sl_stop=0.02, trailing=True, direction="short", size=0.6),
    BacktestConfig(fees=0.001, slippage=0.0005, sl_stop=0.015, tp_stop=0.02, trailing=True, direction="both"),
    BacktestConfig(fees=0.001, slippage=0.0003, tp_stop=0.02, size_type="notional", size=3000.0),
]


def _ids(c: BacktestConfig) -> str:
    return f"{c.direction}-sl{c.sl_stop}-tp{c.tp_stop}-trail{int(c.trailing)}-{c.size_type}{c.size}"


@pytest.mark.parametrize("cfg", STOP_CONFIGS, ids=_ids)
@pytest.mark.parametrize("name", ["sma_cross", "bollinger", "breakout", "rsi_reversion"])
def test_stops_equal_the_plain_loop_with_costs(btc, name, cfg) -> None:
    strat = get_strategy(name)()
    res = run_backtest(btc, strat, cfg)
    eq, fills = reference_with_stops(btc, strat.target(btc), cfg)
    np.testing.assert_allclose(res.equity.to_numpy(), eq, rtol=1e-9)
    o = res.orders
    assert len(o) == len(fills)
    assert (o["time"].to_numpy() == np.array([f[0] for f in fills])).all()
    np.testing.assert_allclose(
        np.where(o["side"] == "buy", 1, -1) * o["size"], [f[1] for f in fills], rtol=1e-9
    )
    np.testing.assert_allclose(o["price"].to_numpy(), [f[2] for f in fills], rtol=1e-12)
    np.testing.assert_allclose(o["fees"].to_numpy(), [f[3] for f in fills], rtol=1e-9)
    assert list(o["reason"]) == [f[4] for f in fills]
    assert (o["reason"] != "signal").sum() > 3, "the stops did fire"
    # the trades' reasons agree with their last fill
    closed = res.trades[res.trades["status"] == "closed"]
    assert set(closed["exit_reason"]) <= {"signal", "stop_loss", "take_profit"}


@pytest.mark.parametrize("cfg", STOP_CONFIGS[:4], ids=_ids)
@pytest.mark.parametrize("name", ["sma_cross", "bollinger", "breakout", "tsmom", "rsi_reversion"])
def test_sweep_kernels_with_stops_and_start_equal_run_backtest(btc, name, cfg) -> None:
    grids = {
        "sma_cross": ["fast=10,20", "slow=50,90"],
        "breakout": ["window=10,40", "exit_window=5,20"],
        "tsmom": ["lookback=24,96", "threshold=0,0.02"],
        "bollinger": ["window=10,40", "entry=1.5,2.0"],
        "rsi_reversion": ["period=7,14", "lower=25,30"],
    }
    cls = get_strategy(name)
    res = sweep(btc, cls, parse_grid(grids[name], cls), cfg, start="2024-02-01")
    assert res.engine == f"numba:{name}"
    for _, row in res.table.iterrows():
        params = cls.make_params({k: row[k] for k in cls.Params.model_fields}).model_dump()
        bt = run_backtest(btc, cls(**params), cfg, start="2024-02-01")
        m = bt.metrics
        assert math.isclose(bt.equity.iloc[-1], row["final_equity"], rel_tol=1e-9), params
        assert m["n_trades"] == row["n_trades"], params
        assert math.isclose(m["max_drawdown"], row["max_drawdown"], rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(m["exposure"], row["exposure"], rel_tol=1e-9)
        for key in ("sharpe", "win_rate"):
            assert (np.isnan(m[key]) and np.isnan(row[key])) or math.isclose(m[key], row[key], rel_tol=1e-9)


# ----------------------------------------------------------------------------------- one case per rule


class Scripted(Strategy):
    """Targets given as a list (decided at each close)."""

    name = "scripted_test"

    class Params(Params):
        pass

    def __init__(self, targets: list[float]) -> None:
        super().__init__()
        self._t = targets

    def target(self, data, features=None):
        return pd.Series(self._t, index=data.index, dtype=float)


def bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(rows), freq="1h", tz="UTC")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=idx)
    df["volume"] = 1.0
    df.attrs.update(symbol="X/USDT", timeframe="1h")
    return df


FEE, SLIP = 0.001, 0.002


def run(rows, targets, **kw):
    cfg = BacktestConfig(fees=FEE, slippage=SLIP, **kw)
    return run_backtest(bars(rows), Scripted(targets), cfg)


def test_a_stop_fill_pays_slippage_and_fees() -> None:
    # entry at the open of bar 1 (100 -> 100.2), stop at 100.2 * 0.97 = 97.194 touched in bar 2
    r = run(
        [(100, 101, 99, 100), (100, 101, 99.5, 100), (99, 99.5, 96, 97), (97, 98, 96, 97)],
        [1, 1, 1, 1],
        sl_stop=0.03,
    )
    stop = r.orders.iloc[-1]
    assert stop["reason"] == "stop_loss" and stop["side"] == "sell"
    level = 100 * (1 + SLIP) * 0.97
    assert math.isclose(stop["price"], level * (1 - SLIP), rel_tol=1e-12)
    assert math.isclose(stop["fees"], stop["size"] * stop["price"] * FEE, rel_tol=1e-12)


def test_the_strategys_exit_at_the_open_comes_before_the_stop() -> None:
    # the target goes flat at the close of bar 1: the exit is at bar 2's open, although bar 2 touches the stop
    r = run(
        [(100, 101, 99, 100), (100, 101, 99.5, 100), (99, 99.5, 90, 92), (92, 93, 91, 92)],
        [1, 0, 0, 0],
        sl_stop=0.03,
    )
    exit_ = r.orders.iloc[-1]
    assert exit_["reason"] == "signal" and math.isclose(exit_["price"], 99 * (1 - SLIP), rel_tol=1e-12)
    assert len(r.orders) == 2


def test_take_profit_is_not_booked_above_an_exit_at_the_open() -> None:
    r = run(
        [(100, 101, 99, 100), (100, 101, 99.5, 100), (101, 120, 100, 110), (110, 111, 109, 110)],
        [1, 0, 0, 0],
        tp_stop=0.05,
    )
    assert list(r.orders["reason"]) == ["signal", "signal"]
    assert math.isclose(r.orders.iloc[-1]["price"], 101 * (1 - SLIP), rel_tol=1e-12)


def test_the_entry_bar_itself_is_checked() -> None:
    # entry at bar 1's open; bar 1's own low is 5 % below: the stop fills within the entry bar
    r = run([(100, 101, 99, 100), (100, 101, 95, 96), (96, 97, 95, 96)], [1, 1, 1], sl_stop=0.03)
    assert list(r.orders["reason"]) == ["signal", "stop_loss"]
    assert (r.orders["time"] == r.equity.index[1]).all()
    t = r.trades.iloc[0]
    assert t["exit_reason"] == "stop_loss" and t["entry_time"] == t["exit_time"]


def test_a_gap_through_the_stop_fills_at_the_open() -> None:
    r = run(
        [(100, 101, 99, 100), (100, 101, 99.5, 100), (90, 91, 89, 90), (90, 91, 89, 90)],
        [1, 1, 1, 1],
        sl_stop=0.03,
    )
    stop = r.orders.iloc[-1]
    assert stop["reason"] == "stop_loss" and math.isclose(stop["price"], 90 * (1 - SLIP), rel_tol=1e-12)


def test_stop_loss_first_when_both_are_touched_in_one_bar() -> None:
    r = run(
        [(100, 101, 99, 100), (100, 100.5, 99.5, 100), (100, 110, 90, 100), (100, 101, 99, 100)],
        [1, 1, 1, 1],
        sl_stop=0.03,
        tp_stop=0.05,
    )
    assert r.orders.iloc[-1]["reason"] == "stop_loss"


def test_a_reversal_on_a_stop_bar_is_kept() -> None:
    # long, then the target turns short at the close of bar 1: the reversal fills at bar 2's open, and the new
    # short is then stopped within bar 2 by its high
    r = run(
        [(100, 101, 99, 100), (100, 101, 99.5, 100), (99, 104, 98, 103), (103, 104, 102, 103)],
        [1, -1, -1, -1],
        sl_stop=0.03,
        direction="both",
    )
    assert list(r.orders["reason"]) == ["signal", "signal", "stop_loss"]
    rev = r.orders.iloc[1]
    assert rev["side"] == "sell" and rev["time"] == r.equity.index[2]
    assert r.positions.iloc[2, 0] == 0.0 and r.positions.iloc[1, 0] > 0


def test_after_a_stop_the_asset_stays_flat_until_the_target_changes() -> None:
    r = run(
        [
            (100, 101, 99, 100),
            (100, 101, 99.5, 100),
            (99, 99.5, 95, 96),
            (96, 99, 95, 98),
            (98, 99, 97, 98),
            (98, 99, 97, 98),
        ],
        [1, 1, 1, 0, 1, 1],
        sl_stop=0.03,
    )
    assert list(r.orders["reason"]) == ["signal", "stop_loss", "signal"]
    assert r.orders.iloc[-1]["time"] == r.equity.index[5]  # re-entry only after the target went 0 -> 1


# ----------------------------------------------------------------------------------- trade statistics


def test_trade_statistics_count_closed_trades_and_report_the_open_one_apart(btc) -> None:
    cfg = BacktestConfig(fees=0.001, slippage=0.0005)
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    res = run_backtest(btc, strat, cfg)
    closed = res.trades[res.trades["status"] == "closed"]
    assert (res.trades["status"] == "open").sum() == 1, "this case ends in a position"
    m = res.metrics
    assert m["n_trades"] == len(closed) and m["n_open_trades"] == 1
    assert math.isclose(m["win_rate"], (closed["pnl"] > 0).mean(), rel_tol=1e-12)
    assert math.isclose(m["open_pnl"], float(res.trades.loc[res.trades["status"] == "open", "pnl"].iloc[0]))
    s = sweep(btc, "sma_cross", {"fast": [10], "slow": [50]}, cfg)
    assert s.table.loc[0, "n_trades"] == m["n_trades"]
    assert math.isclose(s.table.loc[0, "win_rate"], m["win_rate"], rel_tol=1e-12)


def test_sweep_with_start_warms_up_like_backtest(btc) -> None:
    cfg = BacktestConfig(fees=0.001, slippage=0.0005)
    start = btc.index[1500]
    s = sweep(btc, "sma_cross", {"fast": [10], "slow": [200]}, cfg, start=start)
    bt = run_backtest(btc, get_strategy("sma_cross")(fast=10, slow=200), cfg, start=start)
    assert math.isclose(s.table.loc[0, "final_equity"], bt.equity.iloc[-1], rel_tol=1e-12)
    cold = sweep(btc[btc.index >= start], "sma_cross", {"fast": [10], "slow": [200]}, cfg)
    assert not math.isclose(cold.table.loc[0, "final_equity"], bt.equity.iloc[-1], rel_tol=1e-6)


# ----------------------------------------------------------------------------------- vectorbt as reference


@pytest.mark.parametrize(
    "cfg", [STOP_CONFIGS[1], STOP_CONFIGS[2], BacktestConfig(fees=0.001, slippage=0.0005)], ids=_ids
)
def test_to_vectorbt_replays_the_same_fills(btc, cfg) -> None:
    res = run_backtest(btc, get_strategy("sma_cross")(fast=10, slow=50), cfg)
    pf = res.to_vectorbt()
    value = pf.value()
    ours = res.equity.to_numpy()
    theirs = (
        value.groupby(value.index.floor("h")).last().to_numpy().ravel()
    )  # a stop bar's second row is 1 ns later
    assert len(theirs) == len(ours) and len(value) >= len(ours) == len(btc)
    np.testing.assert_allclose(theirs, ours, rtol=1e-9)
    assert math.isclose(float(pf.orders.values["fees"].sum()), float(res.orders["fees"].sum()), rel_tol=1e-9)


def test_vectorbt_from_orders_is_an_independent_reference_without_stops(btc) -> None:
    """Where the conventions match (no stops), vectorbt's own target-percent simulation agrees."""
    import vectorbt as vbt

    cfg = BacktestConfig(fees=0.001, slippage=0.0005, direction="both")
    strat = get_strategy("bollinger")()
    res = run_backtest(btc, strat, cfg)
    eff = strat.target(btc).fillna(0.0).shift(1).fillna(0.0)
    orders = eff.where(eff.ne(eff.shift(1).fillna(0.0)))
    naive = btc.index.tz_localize(None)
    pf = vbt.Portfolio.from_orders(
        close=pd.Series(btc["close"].to_numpy(), index=naive),
        price=pd.Series(btc["open"].to_numpy(), index=naive),
        size=pd.Series(orders.to_numpy(), index=naive),
        size_type="targetpercent",
        fees=cfg.fees,
        slippage=cfg.slippage,
        init_cash=cfg.init_cash,
        freq="1h",
    )
    np.testing.assert_allclose(pf.value().to_numpy(), res.equity.to_numpy(), rtol=1e-9)
