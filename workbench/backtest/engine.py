"""Backtests on vectorbt, with conventions stated exactly so that an independent calculation reproduces them.

Conventions (all of them tested against a plain-Python loop in ``tests/test_backtest.py``):

1. **Timing.** A strategy's target at bar t is decided at the close of t. It is executed at the **open of bar
   t+1**; an order is sent only on bars where the (shifted) target changes. Equity is marked at each close.
   An order whose bar has no open price (NaN in the data) waits for the next bar that has one.
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
6. **Stops** (``sl_stop``, ``tp_stop`` as fractions of the entry price, ``trailing``): the strategy's order at
   a bar's open comes first; then the stops are checked over the rest of that bar, **the entry bar included**
   (the whole bar follows a fill at its open). A stop-loss sits at ``entry × (1 − sl)`` for a long
   (``× (1 + sl)`` for a short; a trailing stop measures from the best price of the bars before, starting at
   the entry), a take-profit at ``entry × (1 ± tp)``; ``entry`` is the position's average fill price. A bar
   that opens through a level fills at the open (the gap); else a level within the bar's range fills at the
   level. When the stop-loss and the take-profit are both within one bar, the stop-loss is assumed first.
   A stop fill is a market order: it pays slippage (rule 3) and the fee (rule 4). After a stop, the asset
   stays flat until the strategy's target changes again; a reversal at the open of a stop bar is traded
   first, and the new position is then subject to the stop over that bar. Sizing is rules 2 and 5, as
   without stops.
7. **Direction.** ``long`` clips targets at 0 from below, ``short`` from above, ``both`` trades either side.

The simulation is :func:`workbench.sim.portfolio.simulate_portfolio` (one compiled pass, the fill and cost
functions of :mod:`workbench.sim.fills` that the sweep kernels and the paper broker use too). vectorbt is the
independent reference in the tests and an export: :meth:`BacktestResult.to_vectorbt` replays the fills as a
``vbt.Portfolio`` for its plots and analytics. Trades are round trips (see :mod:`workbench.sim.portfolio`);
the trade statistics count closed trades, and the trade still open at the end is reported apart
(``n_open_trades``, ``open_pnl``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from workbench.backtest.benchmark import benchmark_name
from workbench.backtest.metrics import epoch_ns, metrics_from_arrays, trade_stats
from workbench.sim.portfolio import bars_held, simulate_portfolio, units_held
from workbench.strategies.base import Strategy
from workbench.types import Timeframe

if TYPE_CHECKING:
    from workbench.config import TradingConfig

__all__ = ["BacktestConfig", "BacktestResult", "align", "run_backtest", "targets_for"]


class BacktestConfig(BaseModel):
    """How orders are sized, priced and charged. Frozen; unknown keys are errors.

    The field defaults are the code's (taker fee 0.1%, no slippage). The costs a session trades with are in
    ``trading.yml``; :meth:`from_trading` takes them from there (``fees.taker``, ``slippage_bps``), which is
    what the CLI does, so a backtest and a paper session are charged alike unless told otherwise.
    """

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

    @classmethod
    def from_trading(cls, trading: TradingConfig, **overrides: Any) -> BacktestConfig:
        """The costs of ``trading`` (taker fee: every backtest fill is a market order; ``slippage_bps`` / 1e4),
        then ``overrides`` (any field; ``None`` values are ignored, so unset CLI options fall through)."""
        base: dict[str, Any] = {"fees": trading.fees.taker, "slippage": trading.slippage_bps / 10_000}
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def has_stops(self) -> bool:
        return self.sl_stop is not None or self.tp_stop is not None


@dataclass(frozen=True)
class _SimRecords:
    """What the simulator returned and what the result's frames and metrics are built from on first access."""

    index: pd.DatetimeIndex  # the simulated bars
    equity: np.ndarray  # (n,)
    fills: np.ndarray  # FILL_FIELDS rows, in time order
    trades: np.ndarray  # TRADE_FIELDS rows, by asset then entry
    init_cash: float
    step_ns: int  # one bar: the initial cash is marked one step before the first bar
    benchmark: np.ndarray | None  # prices given as the benchmark, on the simulated bars; None: buy and hold
    n_trials: int
    trials_sharpe_var: float | None
    targets: np.ndarray  # sized targets on every bar given (before the start cut)
    targets_index: pd.Index
    targets_columns: pd.Index
    sel: slice | np.ndarray  # the simulated bars among those given
    frames: Mapping[str, pd.DataFrame]  # the candles given


_UNSET: Any = object()


class BacktestResult:
    """A backtest's result. ``equity``, ``targets`` and the inputs are set on construction; ``positions``,
    ``trades``, ``orders``, ``metrics`` and ``candles`` from ``run_backtest`` are built from the simulator's
    arrays on first access and cached (a sweep or a caller that needs only the equity pays for nothing else).
    Every attribute can also be given or assigned directly."""

    def __init__(
        self,
        strategy: str,
        params: dict[str, Any],
        config: BacktestConfig,
        symbols: list[str],
        timeframe: str | None,
        equity: pd.Series,
        targets: pd.DataFrame = _UNSET,
        positions: pd.DataFrame = _UNSET,
        trades: pd.DataFrame = _UNSET,
        orders: pd.DataFrame = _UNSET,
        metrics: dict[str, float] = _UNSET,
        exchange: str | None = None,
        candles: dict[str, pd.DataFrame] | None = None,
        *,
        benchmark: str | None = None,
        records: _SimRecords | None = None,
    ) -> None:
        self.strategy = strategy
        self.params = params
        self.config = config
        self.symbols = symbols
        self.timeframe = timeframe
        self.equity = equity
        self.exchange = exchange
        self.benchmark = benchmark  # what metrics["beta"] is measured against (benchmark.benchmark_name)
        self._records = records
        given = {
            "targets": targets,
            "positions": positions,
            "trades": trades,
            "orders": orders,
            "metrics": metrics,
        }
        missing = [k for k, v in given.items() if v is _UNSET]
        if missing and records is None:
            raise TypeError(f"BacktestResult needs {', '.join(missing)} (or the simulator's records)")
        self._cache: dict[str, Any] = {k: v for k, v in given.items() if v is not _UNSET}
        if candles is not None:
            self._cache["candles"] = candles
        elif records is None:
            self._cache["candles"] = {}

    def __repr__(self) -> str:
        span = f"{self.start} .. {self.end}" if len(self.equity) else "no bars"
        return f"BacktestResult({self.strategy!r}, {self.params!r}, {self.symbols!r}, {span})"

    def _get(self, name: str) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            value = self._cache[name] = getattr(self, f"_build_{name}")()
            return value

    def _build_held(self) -> np.ndarray:
        r = self._records
        assert r is not None
        return units_held(r.fills, len(r.index), len(self.symbols))

    def _build_positions(self) -> pd.DataFrame:
        r = self._records
        assert r is not None
        return pd.DataFrame(self._get("held"), index=r.index, columns=self.symbols)

    def _build_trades(self) -> pd.DataFrame:
        assert self._records is not None
        return _trades(self._records.trades, self.symbols, self._records.index)

    def _build_orders(self) -> pd.DataFrame:
        assert self._records is not None
        return _orders(self._records.fills, self.symbols, self._records.index)

    def _build_candles(self) -> dict[str, pd.DataFrame]:
        r = self._records
        assert r is not None
        return {s: (df.iloc[r.sel] if isinstance(r.sel, slice) else df[r.sel]) for s, df in r.frames.items()}

    def _build_targets(self) -> pd.DataFrame:
        r = self._records
        assert r is not None
        return pd.DataFrame(r.targets[r.sel], index=r.targets_index[r.sel], columns=r.targets_columns)

    def _build_metrics(self) -> dict[str, float]:
        r = self._records
        assert r is not None
        # the curve: the initial cash one bar before the first bar, then the equity at each close
        t_ns = epoch_ns(r.index)
        times = np.empty(len(t_ns) + 1, dtype=np.int64)
        times[0] = t_ns[0] - r.step_ns
        times[1:] = t_ns
        curve = np.empty(len(r.equity) + 1)
        curve[0] = r.init_cash
        curve[1:] = r.equity
        bench = _benchmark_curve(r)  # on the curve's points (the prepended bar included)
        ok = ~np.isnan(curve)
        if not ok.all():
            curve, times = curve[ok], times[ok]
            bench = None if bench is None else bench[ok]
        f, tr = r.fills, r.trades
        return metrics_from_arrays(
            curve,
            times,
            trades=trade_stats(tr[:, 8].copy(), tr[:, 9] != 1),
            exposure=bars_held(r.fills, len(r.index), len(self.symbols)) / len(r.index),
            turnover_notional=float(np.sum(np.abs(f[:, 2]) * f[:, 3])) if len(f) else 0.0,
            benchmark=bench,
            n_trials=r.n_trials,
            trials_sharpe_var=r.trials_sharpe_var,
        )

    targets = property(
        lambda self: self._get("targets"), lambda self, v: self._cache.__setitem__("targets", v)
    )
    positions = property(
        lambda self: self._get("positions"), lambda self, v: self._cache.__setitem__("positions", v)
    )
    trades = property(lambda self: self._get("trades"), lambda self, v: self._cache.__setitem__("trades", v))
    orders = property(lambda self: self._get("orders"), lambda self, v: self._cache.__setitem__("orders", v))
    metrics = property(
        lambda self: self._get("metrics"), lambda self, v: self._cache.__setitem__("metrics", v)
    )
    candles = property(
        lambda self: self._get("candles"), lambda self, v: self._cache.__setitem__("candles", v)
    )

    def to_vectorbt(self) -> Any:
        """The same fills as a ``vectorbt.Portfolio`` (``from_orders`` at the fill prices, fees as rates).

        A bar with a stop fill becomes two rows (the open's orders, then the stop 1 ns later, with the open as
        the first row's close), since vectorbt takes one order per bar and asset; the value at each bar's last
        row equals :attr:`equity`.
        """
        import vectorbt as vbt  # heavy: imported where used

        idx = self.equity.index
        n, k = len(idx), len(self.symbols)
        o = self.orders
        col = {s: j for j, s in enumerate(self.symbols)}
        pos = idx.get_indexer(o["time"]) if len(o) else np.empty(0, dtype=int)
        sub = (o["reason"] != "signal").to_numpy(dtype=int) if len(o) else np.empty(0, dtype=int)
        split = np.zeros(n, dtype=bool)
        split[pos[sub == 1]] = True
        row_of_bar = np.arange(n) + np.cumsum(split)  # a bar's last row
        rows = n + int(split.sum())
        times = np.empty(rows, dtype="datetime64[ns]")
        naive = _naive(idx).to_numpy()
        times[row_of_bar] = naive
        times[row_of_bar[split] - 1] = naive[split]
        times[row_of_bar[split]] = naive[split] + np.timedelta64(1, "ns")
        close = np.empty((rows, k))
        for s, j in col.items():
            close[row_of_bar, j] = self.candles[s]["close"].to_numpy() if self.candles else np.nan
            if split.any():
                close[row_of_bar[split] - 1, j] = self.candles[s]["open"].to_numpy()[split]
        size = np.full((rows, k), np.nan)
        price = np.full((rows, k), np.nan)
        if len(o):
            r = row_of_bar[pos] - np.where(split[pos] & (sub == 0), 1, 0)
            c = o["symbol"].map(col).to_numpy()
            size[r, c] = np.where(o["side"] == "buy", 1.0, -1.0) * o["size"].to_numpy()
            price[r, c] = o["price"].to_numpy()
        frame = pd.DatetimeIndex(times)
        kw: dict[str, Any] = {}
        if k > 1:
            kw = dict(group_by=True, cash_sharing=True, call_seq="auto")
        step = idx[1] - idx[0] if n > 1 else pd.Timedelta(1, "h")
        return vbt.Portfolio.from_orders(
            close=pd.DataFrame(close, index=frame, columns=self.symbols),
            size=pd.DataFrame(size, index=frame, columns=self.symbols),
            price=pd.DataFrame(price, index=frame, columns=self.symbols),
            size_type="amount",
            fees=self.config.fees,
            init_cash=self.config.init_cash,
            freq=step,
            **kw,
        )

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
            "benchmark": self.benchmark,
            "start": ts(self.start),
            "end": ts(self.end),
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "equity": equity_pairs(self.equity),
            "trades": json.loads(trades.to_json(orient="records")),
            "fills": self.fills(),
        }

    def fills(self) -> list[dict[str, Any]]:
        """Every fill in the shape of ``workbench journal export``'s fills (``timestamp`` in ms), so that a
        backtest and a trading session compare like with like (``workbench reconcile``)."""
        o = self.orders
        if not len(o):
            return []
        ms = ((o["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")).to_numpy()
        quote = [str(s).split("/", 1)[1].split(":", 1)[0] if "/" in str(s) else "" for s in o["symbol"]]
        return [
            {
                "timestamp": int(t),
                "client_order_id": None,
                "symbol": str(sym),
                "side": str(side),
                "amount": float(a),
                "price": float(p),
                "fee": float(f),
                "fee_currency": q,
                "reason": str(r),
            }
            for t, sym, side, a, p, f, q, r in zip(
                ms, o["symbol"], o["side"], o["size"], o["price"], o["fees"], quote, o["reason"], strict=True
            )
        ]

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False, default=str))


def iso_times(index: pd.Index) -> list[str]:
    """``Timestamp.isoformat()`` of every time in ``index``, computed for the whole index at once where the
    times are UTC whole seconds (a 5-minute year is 10^5 of them: one by one took 0.4 s)."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None and str(index.tz) == "UTC" and len(index):
        values = index.tz_convert(None).to_numpy()
        whole = values.astype("datetime64[s]")
        if (whole == values).all():
            return [t + "+00:00" for t in np.datetime_as_string(whole, unit="s").tolist()]
    return [None if pd.isna(t) else pd.Timestamp(t).isoformat() for t in index]


def equity_pairs(equity: pd.Series) -> list[tuple[str, Any]]:
    """The curve as strict-JSON ``(iso time, value)`` pairs (arrays in JSON): NaN as null, ±inf as ``"inf"`` /
    ``"-inf"``."""
    values = equity.to_numpy(dtype="float64")
    ys: list[Any] = values.tolist()
    if not np.isfinite(values).all():
        ys = [_json_float(y) for y in ys]
    return list(zip(iso_times(equity.index), ys, strict=True))


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
    simulation runs on ``[start, end)``. ``benchmark`` (prices on the same index) is what ``beta`` is measured
    against; by default buy and hold of the same symbols over the same bars (:mod:`workbench.backtest.benchmark`).
    """
    config = config or BacktestConfig()
    frames = align(data)
    symbols = list(frames)
    raw = targets_for(strategy, frames, features)
    raw = raw.reindex(columns=symbols) if set(raw.columns) == set(symbols) else raw
    # numpy from here on (the same operations as fillna / clip / multiply / shift on the frame)
    values = raw.to_numpy(dtype="float64", na_value=np.nan)
    # NaN -> 0 and the direction's clip in one pass (fmax / fmin take the number over a NaN)
    if config.direction == "long":
        tgt = np.fmax(values, 0.0)
    elif config.direction == "short":
        tgt = np.fmin(values, 0.0)
    else:
        tgt = np.nan_to_num(values, nan=0.0, posinf=np.inf, neginf=-np.inf)
    if np.isinf(tgt).any():  # a strategy bug (a division by zero): no position can be sized from it
        row, col = np.argwhere(np.isinf(tgt))[0]
        raise ValueError(
            f"strategy {strategy.name!r}: target {tgt[row, col]} for {raw.columns[col]} at {raw.index[row]} "
            "(targets must be finite numbers, or NaN for no position)"
        )
    # single-asset strategies on n assets: each gets 1/n of the fraction; pair strategies weight their legs
    split = strategy.assets == 1 and config.size_type == "fraction"
    scale = config.size / len(symbols) if split else config.size
    if scale != 1.0:
        tgt *= scale
    # decided at the close of t, executed at the open of t+1
    effective = np.empty_like(tgt)
    effective[:1] = 0.0
    effective[1:] = tgt[:-1]
    first = next(iter(frames.values()))
    index = first.index
    if start is None and end is None:
        if not len(index):
            raise ValueError(f"no bars in [{start}, {end})")
        sel: slice | np.ndarray = slice(0, len(index))
    else:
        mask = np.ones(len(index), dtype=bool)
        if start is not None:
            mask &= index >= _utc(start)
        if end is not None:
            mask &= index < _utc(end)
        if not mask.any():
            raise ValueError(f"no bars in [{start}, {end})")
        sel = _as_slice(mask)
    tz_index = index[sel]
    tf = first.attrs.get("timeframe")
    freq = pd.Timedelta(Timeframe.parse(tf).ms, unit="ms") if tf else None
    if len(symbols) == 1:
        one = frames[symbols[0]]
        arrays = [np.ascontiguousarray(one[c].to_numpy(dtype="float64")[sel].reshape(-1, 1)) for c in _OHLC]
    else:
        arrays = [
            np.ascontiguousarray(
                np.column_stack([frames[s][c].to_numpy(dtype="float64") for s in symbols])[sel]
            )
            for c in _OHLC
        ]
    eff = np.ascontiguousarray(effective[sel])
    # an upper bound on the orders: one per asset and target change (the first bar against 0)
    changes = int(np.count_nonzero(eff[1:] != eff[:-1])) + int(np.count_nonzero(eff[0] != 0.0))
    nan = float("nan")
    equity_a, fills, trades_a = simulate_portfolio(
        *arrays,
        eff,
        config.size_type == "notional",
        config.fees,
        config.slippage,
        config.init_cash,
        config.sl_stop if config.sl_stop is not None else nan,
        config.tp_stop if config.tp_stop is not None else nan,
        config.trailing,
        2 * changes + 2 * len(symbols),
    )
    equity = pd.Series(equity_a, index=tz_index, name="equity", copy=False)
    if len(trades_a) and len(symbols) > 1:  # one asset: already in entry order
        trades_a = trades_a[np.lexsort((trades_a[:, 2], trades_a[:, 0]))]  # by asset, then entry: as vectorbt
    # metrics start from the initial cash one bar before the first bar (fees of a first-bar fill count)
    step = (
        freq
        if freq is not None
        else (tz_index[1] - tz_index[0] if len(tz_index) > 1 else pd.Timedelta(1, "h"))
    )
    bench_name = (
        str(benchmark.name or "the given benchmark") if benchmark is not None else benchmark_name(symbols)
    )
    records = _SimRecords(
        index=tz_index,
        equity=equity_a,
        fills=fills,
        trades=trades_a,
        init_cash=config.init_cash,
        step_ns=int(step.value),
        # a given benchmark is aligned now (a bad one fails here, not at the first look at the metrics); buy and
        # hold of the symbols is computed with the metrics
        benchmark=None if benchmark is None else np.asarray(benchmark.reindex(tz_index), dtype=float),
        n_trials=n_trials,
        trials_sharpe_var=trials_sharpe_var,
        targets=tgt,
        targets_index=raw.index,
        targets_columns=raw.columns,
        sel=sel,
        frames=frames,
    )
    return BacktestResult(
        strategy=strategy.name,
        params=strategy.params.model_dump(),
        config=config,
        symbols=symbols,
        timeframe=tf,
        equity=equity,
        exchange=first.attrs.get("exchange"),
        records=records,
        benchmark=bench_name,
    )


_OHLC = ("open", "high", "low", "close")


def _benchmark_curve(r: _SimRecords) -> np.ndarray:
    """The benchmark's values on the metric curve's points (the bar prepended before the first one included).

    Beta is measured one way everywhere: against buy and hold of the backtest's own symbols (benchmark.py),
    which starts from the same cash one bar before the first bar and buys at the first open (equal parts of
    each symbol); a benchmark given as prices has no price for that prepended bar (as reindexing gives)."""
    n = len(r.index)
    out = np.empty(n + 1)
    if r.benchmark is not None:
        out[0] = np.nan
        out[1:] = r.benchmark
        return out
    out[0] = 1.0
    if not n:
        return out[:1]
    frames = list(r.frames.values())
    if len(frames) == 1:
        close = frames[0]["close"].to_numpy(dtype="float64")[r.sel]
        np.divide(close, frames[0]["open"].to_numpy(dtype="float64")[r.sel][0], out=out[1:])
        return out
    closes = np.column_stack([f["close"].to_numpy(dtype="float64") for f in frames])[r.sel]
    opens = np.array([f["open"].to_numpy(dtype="float64")[r.sel][0] for f in frames])
    out[1:] = (closes / opens).mean(axis=1)  # numpy's pairwise mean: the same floats for any number of assets
    return out


def _as_slice(mask: np.ndarray) -> slice | np.ndarray:
    """A boolean mask as the slice it selects when its True values are contiguous (no copy), else itself."""
    on = np.flatnonzero(mask)
    if len(on) and on[-1] - on[0] + 1 == len(on):
        return slice(int(on[0]), int(on[-1]) + 1)
    return mask


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
    "exit_reason",
]


_REASONS = np.array(["signal", "stop_loss", "take_profit"], dtype=object)


def _trades(r: np.ndarray, symbols: list[str], index: pd.DatetimeIndex) -> pd.DataFrame:
    """Trades (round trips) from the simulator's records (``workbench.sim.portfolio.TRADE_FIELDS``)."""
    if len(r) == 0:
        return pd.DataFrame(columns=_TRADE_COLUMNS)
    closed = r[:, 9] == 1
    size, entry = r[:, 4], r[:, 5]
    reason = np.where(closed, _REASONS[np.maximum(r[:, 10], 0).astype(int)], "open")
    return pd.DataFrame(
        {
            "symbol": np.asarray(symbols, dtype=object)[r[:, 0].astype(int)],
            "direction": np.where(r[:, 1] > 0, "long", "short"),
            "entry_time": index[r[:, 2].astype(int)],
            "exit_time": index[r[:, 3].astype(int)],
            "size": size,
            "entry_price": entry,
            "exit_price": r[:, 6],
            "fees": r[:, 7],
            "pnl": r[:, 8],
            "return": r[:, 8] / (size * entry),
            "status": np.where(closed, "closed", "open"),
            "exit_reason": reason,
        }
    )


def _orders(r: np.ndarray, symbols: list[str], index: pd.DatetimeIndex) -> pd.DataFrame:
    """Fills from the simulator's records (``workbench.sim.portfolio.FILL_FIELDS``), in time order."""
    if len(r) == 0:
        return pd.DataFrame(columns=["time", "symbol", "side", "size", "price", "fees", "reason"])
    return pd.DataFrame(
        {
            "time": index[r[:, 0].astype(int)],
            "symbol": np.asarray(symbols, dtype=object)[r[:, 1].astype(int)],
            "side": np.where(r[:, 2] > 0, "buy", "sell"),
            "size": np.abs(r[:, 2]),
            "price": r[:, 3],
            "fees": r[:, 4],
            "reason": _REASONS[r[:, 5].astype(int)],
        }
    )
