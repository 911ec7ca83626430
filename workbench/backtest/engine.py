"""Backtests on vectorbt, with conventions stated exactly so that an independent calculation reproduces them.

Conventions (all of them tested against a plain-Python loop in ``tests/test_backtest.py``):

1. **Timing.** A strategy's target at bar t is decided at the close of t. It is executed at the **open of bar
   t+1**; an order is sent only on bars where the (shifted) target changes. Equity is marked at each close.
2. **Sizing, ``size_type='fraction'``** (default; vectorbt ``targetpercent``): at the execution bar, the
   portfolio value is ``V = cash + Σ units_i × open_i`` (at the unslipped open); the target holding of an asset
   is ``units* = target × size_share × V / open`` where ``size_share = size / n_assets`` for single-asset
   strategies run on n assets (pair strategies give their own weights); the order is ``units* − units``.
   ``size_type='notional'`` (vectorbt ``targetvalue``): ``units* = target × size / open``.
3. **Prices.** A buy fills at ``open × (1 + slippage)``, a sell at ``open × (1 − slippage)``.
4. **Fees.** ``fees × |units × fill price|`` in quote currency, paid from cash on every fill (taker fees: all
   fills are market orders).
5. **Cash.** A buy that costs more than the cash available (``units × price × (1 + fees)``) is filled
   partially, for ``cash / (price × (1 + fees))`` units: all-in buys ``cash / (price·(1+fee))`` units. Short
   sales credit the proceeds less fees to cash. Several assets share one cash balance; within a bar, sells
   execute before buys.
6. **Stops** (``sl_stop``, ``tp_stop`` as fractions of the entry price, ``trailing``): run on vectorbt's signal
   simulator instead. Entries are the bars where the shifted target turns long (short); each entry spends
   ``size`` × the cash available (or ``size`` quote for notional); stops are fractions of the fill price,
   checked against each bar's open
   (a gap through the stop fills at the open), then its low/high, and fill at the stop price (plus slippage).
   After a stop, the position stays flat until the strategy's target changes again.
7. **Direction.** ``long`` clips targets at 0 from below, ``short`` from above, ``both`` trades either side.

Inside, timestamps are tz-naive UTC (vectorbt is ~70x slower on a tz-aware index); results come back tz-aware.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from workbench.backtest.metrics import compute_metrics
from workbench.strategies.base import Strategy
from workbench.types import Timeframe

__all__ = ["BacktestConfig", "BacktestResult", "align", "run_backtest", "targets_for"]


class BacktestConfig(BaseModel):
    """How orders are sized, priced and charged. Frozen; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    init_cash: float = Field(10_000.0, gt=0)
    fees: float = Field(0.001, ge=0, lt=0.1, description="taker fee, fraction of notional per fill")
    slippage: float = Field(0.0, ge=0, lt=0.1, description="fraction of the open price, against the trader")
    direction: Literal["long", "short", "both"] = "long"
    size_type: Literal["fraction", "notional"] = "fraction"
    size: float = Field(
        1.0, gt=0, description="fraction of equity (<= 1 without leverage), or quote per asset"
    )
    sl_stop: float | None = Field(None, gt=0, lt=1)
    tp_stop: float | None = Field(None, gt=0)
    trailing: bool = False

    @property
    def has_stops(self) -> bool:
        return self.sl_stop is not None or self.tp_stop is not None


@dataclass
class BacktestResult:
    strategy: str
    params: dict[str, Any]
    config: BacktestConfig
    symbols: list[str]
    timeframe: str | None
    equity: pd.Series
    targets: pd.DataFrame
    positions: pd.DataFrame
    trades: pd.DataFrame
    orders: pd.DataFrame
    metrics: dict[str, float]
    exchange: str | None = None
    portfolio: Any = field(default=None, repr=False)

    @property
    def start(self) -> pd.Timestamp:
        return self.equity.index[0]

    @property
    def end(self) -> pd.Timestamp:
        return self.equity.index[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metrics, parameters, configuration, data range, equity curve and every trade."""

        def ts(x: Any) -> Any:
            return None if pd.isna(x) else pd.Timestamp(x).isoformat()

        trades = self.trades.copy()
        for c in ("entry_time", "exit_time"):
            trades[c] = trades[c].map(ts)
        return {
            "strategy": self.strategy,
            "params": self.params,
            "config": self.config.model_dump(),
            "exchange": self.exchange,
            "symbols": self.symbols,
            "timeframe": self.timeframe,
            "start": ts(self.start),
            "end": ts(self.end),
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "equity": [[ts(t), float(v)] for t, v in self.equity.items()],
            "trades": json.loads(trades.to_json(orient="records")),
        }

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False, default=str))


def _json_float(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if np.isnan(f):
        return None
    if np.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f


# ------------------------------------------------------------------------------------------ inputs


def align(data: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A dict of Candles on their common index (the intersection of bar times)."""
    if isinstance(data, pd.DataFrame):
        name = str(data.attrs.get("symbol", "asset"))
        return {name: data}
    if not data:
        raise ValueError("no market data given")
    frames = dict(data)
    idx = None
    for df in frames.values():
        idx = df.index if idx is None else idx.intersection(df.index)
    if idx is None or len(idx) == 0:
        raise ValueError(f"the assets {list(frames)} have no bars in common")
    return {k: (v if v.index.equals(idx) else v.loc[idx]) for k, v in frames.items()}


def targets_for(
    strategy: Strategy, data: Mapping[str, pd.DataFrame], features: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The strategy's raw target per asset (columns = symbols), before direction and sizing."""
    if strategy.assets == 1:
        cols = {s: strategy.target(df, features) for s, df in data.items()}
        return pd.DataFrame(cols)
    if len(data) != strategy.assets:
        raise ValueError(
            f"strategy {strategy.name!r} needs {strategy.assets} assets, got {len(data)}: {list(data)}"
        )
    out = strategy.target(data, features)
    return out if isinstance(out, pd.DataFrame) else out.to_frame()


def _utc(x: object) -> pd.Timestamp:
    t = pd.Timestamp(x)  # type: ignore[arg-type]
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _naive(idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx


# ------------------------------------------------------------------------------------------ engine


def run_backtest(
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    strategy: Strategy,
    config: BacktestConfig | None = None,
    *,
    start: object = None,
    end: object = None,
    features: pd.DataFrame | None = None,
    benchmark: pd.Series | None = None,
    n_trials: int = 1,
    trials_sharpe_var: float | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` on Candles (one frame, or a dict symbol -> frame for several assets).

    Targets are computed on all the data given (so indicators warm up on history before ``start``), then the
    simulation runs on ``[start, end)``.
    """
    import vectorbt as vbt  # heavy (about 2 s): imported where used

    config = config or BacktestConfig()
    frames = align(data)
    symbols = list(frames)
    raw = targets_for(strategy, frames, features)
    raw = raw.reindex(columns=symbols) if set(raw.columns) == set(symbols) else raw
    tgt = raw.fillna(0.0).astype("float64")
    if config.direction == "long":
        tgt = tgt.clip(lower=0.0)
    elif config.direction == "short":
        tgt = tgt.clip(upper=0.0)
    # single-asset strategies on n assets: each gets 1/n of the fraction; pair strategies weight their legs
    split = strategy.assets == 1 and config.size_type == "fraction"
    tgt = tgt * (config.size / len(symbols) if split else config.size)
    # decided at the close of t, executed at the open of t+1
    effective = tgt.shift(1).fillna(0.0)
    first = next(iter(frames.values()))
    index = first.index
    mask = np.ones(len(index), dtype=bool)
    if start is not None:
        mask &= index >= _utc(start)
    if end is not None:
        mask &= index < _utc(end)
    if not mask.any():
        raise ValueError(f"no bars in [{start}, {end})")
    effective = effective[mask]
    opens = pd.DataFrame({s: frames[s]["open"] for s in symbols})[mask]
    closes = pd.DataFrame({s: frames[s]["close"] for s in symbols})[mask]
    highs = pd.DataFrame({s: frames[s]["high"] for s in symbols})[mask]
    lows = pd.DataFrame({s: frames[s]["low"] for s in symbols})[mask]
    tz_index = opens.index
    for df in (effective, opens, closes, highs, lows):
        df.index = _naive(df.index)
    tf = first.attrs.get("timeframe")
    freq = pd.Timedelta(Timeframe.parse(tf).ms, unit="ms") if tf else None
    common = dict(
        close=closes,
        price=opens,
        fees=config.fees,
        slippage=config.slippage,
        init_cash=config.init_cash,
        freq=freq,
    )
    if len(symbols) > 1:
        common.update(group_by=True, cash_sharing=True)
    if config.has_stops:
        pf = _with_stops(vbt, effective, opens, highs, lows, config, common)
    else:
        prev = effective.shift(1).fillna(0.0)
        orders = effective.where(effective.ne(prev))  # an order only where the target changes
        pf = vbt.Portfolio.from_orders(
            size=orders,
            size_type="targetpercent" if config.size_type == "fraction" else "targetvalue",
            call_seq="auto" if len(symbols) > 1 else None,
            **common,
        )
    equity = pf.value()
    if isinstance(equity, pd.DataFrame):
        equity = equity.iloc[:, 0]
    equity = pd.Series(equity.to_numpy(), index=tz_index, name="equity")
    positions = pd.DataFrame(
        np.asarray(pf.assets()).reshape(len(tz_index), -1), index=tz_index, columns=symbols
    )
    trades = _trades(pf, symbols, tz_index)
    orders_df = _orders(pf, symbols, tz_index)
    turnover = float((orders_df["size"].abs() * orders_df["price"]).sum()) if len(orders_df) else 0.0
    bench = None
    if benchmark is not None:
        bench = benchmark.reindex(tz_index)
    # metrics start from the initial cash one bar before the first bar (fees of a first-bar fill count)
    step = (
        freq
        if freq is not None
        else (tz_index[1] - tz_index[0] if len(tz_index) > 1 else pd.Timedelta(1, "h"))
    )
    curve = pd.concat([pd.Series([config.init_cash], index=[tz_index[0] - step]), equity])
    metrics = compute_metrics(
        curve,
        trades,
        position=positions.abs().sum(axis=1),
        turnover_notional=turnover,
        benchmark=bench,
        n_trials=n_trials,
        trials_sharpe_var=trials_sharpe_var,
    )
    targets = tgt[mask]
    return BacktestResult(
        strategy=strategy.name,
        params=strategy.params.model_dump(),
        config=config,
        symbols=symbols,
        timeframe=tf,
        equity=equity,
        targets=targets,
        positions=positions,
        trades=trades,
        orders=orders_df,
        metrics=metrics,
        exchange=first.attrs.get("exchange"),
        portfolio=pf,
    )


def _with_stops(
    vbt: Any,
    eff: pd.DataFrame,
    o: pd.DataFrame,
    h: pd.DataFrame,
    lo: pd.DataFrame,
    config: BacktestConfig,
    common: dict,
) -> Any:
    values = np.unique(eff.to_numpy())
    if not np.all(np.isin(np.sign(values) * (values != 0), [-1.0, 0.0, 1.0])):
        raise ValueError("stops need a strategy with discrete long/flat/short targets")
    prev = eff.shift(1).fillna(0.0)
    long_now, long_before = eff > 0, prev > 0
    short_now, short_before = eff < 0, prev < 0
    kw: dict[str, Any] = {}
    if config.size_type == "fraction":
        if config.direction == "both" and config.size != 1.0:
            raise ValueError("with stops and direction 'both', use size 1 (all-in) or size_type 'notional'")
        kw = {
            "size": np.inf if config.size == 1.0 else config.size,
            "size_type": "amount" if config.size == 1.0 else "percent",
        }
    else:
        kw = {"size": config.size, "size_type": "value"}
    return vbt.Portfolio.from_signals(
        entries=long_now & ~long_before,
        exits=~long_now & long_before,
        short_entries=short_now & ~short_before,
        short_exits=~short_now & short_before,
        open=o,
        high=h,
        low=lo,
        sl_stop=config.sl_stop if config.sl_stop is not None else np.nan,
        sl_trail=config.trailing,
        stop_entry_price="fillprice",  # stops relative to the actual fill, not the entry bar's close
        tp_stop=config.tp_stop if config.tp_stop is not None else np.nan,
        **kw,
        **common,
    )


_TRADE_COLUMNS = [
    "symbol",
    "direction",
    "entry_time",
    "exit_time",
    "size",
    "entry_price",
    "exit_price",
    "fees",
    "pnl",
    "return",
    "status",
]


def _trades(pf: Any, symbols: list[str], index: pd.DatetimeIndex) -> pd.DataFrame:
    """Trades from vectorbt's raw records, by integer position (``records_readable`` is about 100x slower:
    it maps the whole time index). Direction 0 = long; status 0 = open."""
    r = pf.trades.values
    if len(r) == 0:
        return pd.DataFrame(columns=_TRADE_COLUMNS)
    sym = np.asarray(symbols, dtype=object)
    return pd.DataFrame(
        {
            "symbol": sym[r["col"]],
            "direction": np.where(r["direction"] == 0, "long", "short"),
            "entry_time": index[r["entry_idx"]],
            "exit_time": index[r["exit_idx"]],
            "size": r["size"],
            "entry_price": r["entry_price"],
            "exit_price": r["exit_price"],
            "fees": r["entry_fees"] + r["exit_fees"],
            "pnl": r["pnl"],
            "return": r["return"],
            "status": np.where(r["status"] == 0, "open", "closed"),
        }
    )


def _orders(pf: Any, symbols: list[str], index: pd.DatetimeIndex) -> pd.DataFrame:
    """Fills from vectorbt's raw records (side 0 = buy)."""
    r = pf.orders.values
    if len(r) == 0:
        return pd.DataFrame(columns=["time", "symbol", "side", "size", "price", "fees"])
    return pd.DataFrame(
        {
            "time": index[r["idx"]],
            "symbol": np.asarray(symbols, dtype=object)[r["col"]],
            "side": np.where(r["side"] == 0, "buy", "sell"),
            "size": r["size"],
            "price": r["price"],
            "fees": r["fees"],
        }
    )
