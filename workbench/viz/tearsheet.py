"""Tear-sheet analytics of a backtest for the HTML report: buy-and-hold benchmark with alpha and beta, rolling
Sharpe and volatility, the worst drawdowns, return and trade-PnL distributions, and exposure over time.

Pure functions of the result's curves (duck-typed: ``equity``, ``positions``, ``trades``, ``config.init_cash``,
``candles``) and plotly figures of them; viz sits below the backtest layer, so nothing here imports it. Every
number is defined here so that an independent calculation reproduces it (``tests/test_report.py`` does, with
numpy OLS, pandas rolling windows and plain loops).

Definitions
-----------
``E_t``
    the equity curve on its UTC bars; the initial cash ``C`` counts as the value one bar before the first one
    (as in ``workbench.backtest.metrics``: fees of a first-bar fill count).
``ppy``
    bars per year: 365 days over the median bar spacing.
Buy and hold
    ``B_t = C × mean_s(close_{s,t} / open_{s,0})``: the initial cash split equally between the symbols, bought
    at the first bar's open, no fees, no slippage, held to the end.
``r_t``, ``b_t``
    the simple returns ``E_t / E_{t-1} - 1`` and ``B_t / B_{t-1} - 1`` over the backtest's bars (``t >= 1``).
Beta, alpha
    the OLS fit ``r_t = α + β b_t`` over the bars where both are finite: ``β = Σ(b - b̄)(r - r̄) / Σ(b - b̄)²``
    (the ``beta`` metric's formula, given the buy-and-hold prices as benchmark), ``α = r̄ - β b̄`` per bar,
    reported annualised as ``α × ppy``. Correlation is Pearson's of ``r`` and ``b``; the information ratio is
    ``mean(r - b) / std(r - b) × sqrt(ppy)`` (``ddof = 1``).
Rolling Sharpe and volatility
    over a trailing window of ``w`` bars (30 days of bars by default), from ``r_t`` (``r_0 = E_0 / C - 1``):
    ``mean / std × sqrt(ppy)`` and ``std × sqrt(ppy)`` (``ddof = 1``, full windows only, NaN where the window is
    flat).
Drawdown episodes
    maximal runs of bars strictly below the running peak (``C`` the first peak): peak = the last bar at the
    peak before the run, trough = the lowest bar in it, recovery = the first bar back at or above the peak
    (none if the run reaches the end). Depth ``E_trough / peak - 1``; duration from the peak's bar to the
    recovery (or to the last bar), in days: the ``max_drawdown_duration_days`` metric's rule.
Exposure
    gross ``Σ_s |units_{s,t} × close_{s,t}| / E_t`` and net ``Σ_s units_{s,t} × close_{s,t} / E_t``, at each
    bar's close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "alpha_beta",
    "benchmark_equity",
    "distribution_figure",
    "drawdown_table",
    "equity_compare_figure",
    "exposure",
    "exposure_figure",
    "prediction_figure",
    "rolling_figure",
    "rolling_stats",
    "trade_analysis_figure",
]

_DAY = pd.Timedelta(days=1)
_YEAR = pd.Timedelta(days=365)
_BENCH = "#7f7f7f"
GREEN, RED = "#26a69a", "#ef5350"


def _init_cash(result: Any) -> float | None:
    try:
        v = float(result.config.init_cash)
    except (AttributeError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def bars_per_year(index: pd.DatetimeIndex) -> float:
    """365 days over the median bar spacing; NaN with fewer than 2 bars."""
    if len(index) < 2:
        return math.nan
    step = (index[1:] - index[:-1]).median()
    return float(_YEAR / step) if step > pd.Timedelta(0) else math.nan


def _curve(equity: pd.Series, init: float | None) -> pd.Series:
    """The equity curve with the initial cash one bar before the first bar (when given)."""
    eq = equity.astype("float64")
    if init is None or len(eq) == 0:
        return eq
    step = (eq.index[1] - eq.index[0]) if len(eq) > 1 else pd.Timedelta(hours=1)
    return pd.concat([pd.Series([init], index=[eq.index[0] - step]), eq])


# ------------------------------------------------------------------------------------------ benchmark


def benchmark_equity(
    candles: Mapping[str, pd.DataFrame], index: pd.DatetimeIndex, init_cash: float
) -> pd.Series | None:
    """Buy and hold of ``candles``' symbols in equal parts on ``index`` (see the module docstring), or None
    when a symbol has no bar on ``index``."""
    parts = []
    for sym, df in candles.items():
        c = df["close"].astype("float64").reindex(index)
        o = df["open"].astype("float64").reindex(index)
        first = o.first_valid_index()
        if first is None or len(c.dropna()) == 0:
            return None
        parts.append((c / float(o.loc[first])).ffill().rename(str(sym)))
    if not parts:
        return None
    return (pd.concat(parts, axis=1).mean(axis=1) * float(init_cash)).rename("buy and hold")


def result_benchmark(result: Any) -> pd.Series | None:
    """Buy and hold of the result's own candles (``result.candles``), or None without them."""
    candles = getattr(result, "candles", None)
    init = _init_cash(result)
    if not candles or init is None:
        return None
    return benchmark_equity(candles, result.equity.index, init)


def _returns(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v[:-1] > 0, v[1:] / v[:-1] - 1.0, 0.0)


def alpha_beta(equity: pd.Series, benchmark: pd.Series, init_cash: float | None = None) -> dict[str, float]:
    """Strategy against ``benchmark`` (an equity curve or prices on the same bars): ``beta``, ``alpha``
    (annualised), ``correlation``, ``r2``, ``information_ratio``, ``benchmark_return`` (total, from the
    benchmark's first bar, or from ``init_cash`` when given) and ``excess_return`` (strategy total return
    minus it). See the module docstring."""
    nan = math.nan
    out = dict.fromkeys(
        ("beta", "alpha", "correlation", "r2", "information_ratio", "benchmark_return", "excess_return"), nan
    )
    b_v = benchmark.reindex(equity.index).to_numpy(dtype="float64")
    e_v = equity.to_numpy(dtype="float64")
    if len(e_v) == 0:
        return out
    b0 = b_v[0] if init_cash is None else float(init_cash)
    e0 = e_v[0] if init_cash is None else float(init_cash)
    out["benchmark_return"] = float(b_v[-1] / b0 - 1.0)
    out["excess_return"] = float(e_v[-1] / e0 - 1.0) - out["benchmark_return"]
    if len(e_v) < 4:
        return out
    r, b = _returns(e_v), _returns(b_v)
    ok = np.isfinite(r) & np.isfinite(b)
    r, b = r[ok], b[ok]
    if len(r) < 3:
        return out
    ppy = bars_per_year(pd.DatetimeIndex(equity.index))
    bd, rd = b - b.mean(), r - r.mean()
    sxx, syy = float(bd @ bd), float(rd @ rd)
    if sxx > 0:
        beta = float(bd @ rd) / sxx
        out["beta"] = beta
        out["alpha"] = (float(r.mean()) - beta * float(b.mean())) * ppy
        if syy > 0:
            corr = float(bd @ rd) / math.sqrt(sxx * syy)
            out["correlation"], out["r2"] = corr, corr * corr
    d = r - b
    sd = float(d.std(ddof=1))
    if sd > 0:
        out["information_ratio"] = float(d.mean()) / sd * math.sqrt(ppy)
    return out


# ------------------------------------------------------------------------------------------ rolling


def default_window(index: pd.DatetimeIndex, days: float = 30.0) -> int:
    """Bars in ``days`` days at the median spacing of ``index`` (at least 3)."""
    ppy = bars_per_year(index)
    if not math.isfinite(ppy):
        return 3
    return max(3, round(ppy * days / 365.0))


def rolling_stats(
    equity: pd.Series, window: int, init_cash: float | None = None, ppy: float | None = None
) -> pd.DataFrame:
    """Rolling annualised Sharpe (``sharpe``) and volatility (``volatility``) of the per-bar returns over
    ``window`` bars, on ``equity``'s index (see the module docstring)."""
    if window < 2:
        raise ValueError(f"the rolling window must be at least 2 bars, got {window}")
    curve = _curve(equity, init_cash)
    r = pd.Series(_returns(curve.to_numpy(dtype="float64")), index=curve.index[1:])
    if init_cash is None:
        r = pd.concat([pd.Series([np.nan], index=equity.index[:1]), r])
    ppy = bars_per_year(pd.DatetimeIndex(equity.index)) if ppy is None else ppy
    roll = r.rolling(window, min_periods=window)
    mean, sd = roll.mean(), roll.std(ddof=1)
    root = math.sqrt(ppy)
    # a flat window (std 0 to rounding) has no Sharpe
    sd = sd.where(sd > 1e-12)
    return pd.DataFrame({"sharpe": mean / sd * root, "volatility": roll.std(ddof=1) * root}, index=r.index)


def rolling_figure(
    result: Any,
    benchmark: pd.Series | None = None,
    *,
    window: int | None = None,
    xs: Any = None,
    max_points: int | None = 50_000,
) -> go.Figure:
    """Rolling Sharpe (top) and annualised volatility in % (bottom) of the strategy, with buy and hold's.

    Beyond ``max_points`` bars the lines keep every ``k``-th bar (and the last), ``k = ceil(n / max_points)``:
    a window of many bars moves little from one bar to the next."""
    eq = result.equity.astype("float64")
    window = default_window(pd.DatetimeIndex(eq.index)) if window is None else window
    init = _init_cash(result)
    st = rolling_stats(eq, window, init)
    days = window / bars_per_year(pd.DatetimeIndex(eq.index)) * 365.0
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Rolling Sharpe ratio (annualised)", "Rolling volatility (annualised)"),
    )
    series = [("strategy", st, "#1f77b4", "solid")]
    if benchmark is not None:
        bst = rolling_stats(benchmark.reindex(eq.index).astype("float64"), window, init)
        series.append(("buy and hold", bst, _BENCH, "dot"))
    if max_points and len(st) > max_points:
        k = math.ceil(len(st) / max_points)
        keep = np.unique(np.r_[np.arange(0, len(st), k), len(st) - 1])
        series = [(n, s.iloc[keep], c, d) for n, s, c, d in series]
        st = st.iloc[keep]
    x = xs(st.index) if xs else st.index
    for name, s, color, dash in series:
        for row, col, scale, fmt in ((1, "sharpe", 1.0, ".2f"), (2, "volatility", 100.0, ".1f")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=(s[col] * scale).to_numpy(),
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    line={"color": color, "width": 1.3, "dash": dash},
                    hovertemplate=f"{name} %{{y:{fmt}}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    fig.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=1)
    fig.update_yaxes(title_text="Sharpe", row=1, col=1)
    fig.update_yaxes(title_text="volatility", ticksuffix="%", row=2, col=1)
    fig.update_xaxes(type="date")
    fig.update_layout(
        title=f"Rolling window: {window:,} bars ({days:,.1f} days)",
        height=520,
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "xanchor": "right", "x": 1},
        margin={"l": 60, "r": 20, "t": 80, "b": 30},
    )
    return fig


# ------------------------------------------------------------------------------------------ drawdowns


def drawdown_table(equity: pd.Series, init_cash: float | None = None, top: int = 5) -> pd.DataFrame:
    """The ``top`` deepest drawdown episodes (see the module docstring), deepest first: columns ``peak``,
    ``trough``, ``recovery`` (NaT if not recovered), ``depth`` (fraction < 0), ``days`` (peak to recovery or
    to the last bar) and ``recovered`` (bool)."""
    cols = ["peak", "trough", "recovery", "depth", "days", "recovered"]
    curve = _curve(equity.dropna(), init_cash)
    v = curve.to_numpy(dtype="float64")
    if len(v) < 2:
        return pd.DataFrame(columns=cols)
    peak = np.maximum.accumulate(v)
    under = v < peak
    edges = np.diff(np.concatenate([[0], under.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # runs [start, stop)
    idx = curve.index
    rows = []
    for a, z in zip(starts, stops, strict=True):
        t = a + int(np.argmin(v[a:z]))
        rec = z < len(v)
        end = idx[z] if rec else idx[-1]
        rows.append(
            {
                "peak": idx[a - 1],
                "trough": idx[t],
                "recovery": idx[z] if rec else pd.NaT,
                "depth": float(v[t] / peak[a] - 1.0),
                "days": float((end - idx[a - 1]) / _DAY),
                "recovered": bool(rec),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        return out
    return out.sort_values(["depth", "peak"], kind="stable").head(top).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ exposure


def exposure(result: Any) -> pd.DataFrame | None:
    """Gross and net exposure (fractions of equity) per bar, from ``result.positions`` and the closes of
    ``result.candles``; None without them."""
    pos = getattr(result, "positions", None)
    candles = getattr(result, "candles", None)
    if pos is None or not candles or len(pos) == 0:
        return None
    eq = result.equity.astype("float64")
    value = pd.DataFrame(index=eq.index)
    for sym in pos.columns:
        if sym not in candles:
            return None
        value[sym] = pos[sym].to_numpy(dtype="float64") * candles[sym]["close"].reindex(eq.index).to_numpy(
            dtype="float64"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        gross = value.abs().sum(axis=1) / eq
        net = value.sum(axis=1) / eq
    return pd.DataFrame({"gross": gross, "net": net}, index=eq.index)


def exposure_figure(ex: pd.DataFrame, *, xs: Any = None) -> go.Figure:
    """Gross and net exposure in % of equity over time."""
    fig = go.Figure()
    x = xs(ex.index) if xs else ex.index
    fig.add_trace(
        go.Scatter(
            x=x,
            y=(ex["gross"] * 100).to_numpy(),
            mode="lines",
            name="gross",
            fill="tozeroy",
            line={"color": "#1f77b4", "width": 1},
            fillcolor="rgba(31,119,180,0.25)",
            hovertemplate="gross %{y:.1f}%<extra></extra>",
        )
    )
    if (ex["net"] != ex["gross"]).any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=(ex["net"] * 100).to_numpy(),
                mode="lines",
                name="net",
                line={"color": "#ff7f0e", "width": 1},
                hovertemplate="net %{y:.1f}%<extra></extra>",
            )
        )
    share = float((ex["gross"].fillna(0) > 0).mean() * 100)
    fig.update_layout(
        title=f"Exposure (value of the positions over equity, at each close; invested {share:.1f}% of bars)",
        height=300,
        hovermode="x unified",
        margin={"l": 60, "r": 20, "t": 50, "b": 30},
    )
    fig.update_yaxes(title_text="exposure", ticksuffix="%")
    fig.update_xaxes(type="date", title_text="time (UTC)")
    return fig


# ------------------------------------------------------------------------------------------ distributions


def daily_returns(equity: pd.Series, init_cash: float | None = None) -> pd.Series:
    """Compounded returns of UTC calendar days: each day's last equity over the previous day's (the first day
    from ``init_cash`` when given, else from the first value)."""
    eq = equity.astype("float64").dropna()
    if eq.empty:
        return pd.Series(dtype="float64")
    last = eq.resample("1D").last().dropna()
    prev = np.concatenate([[eq.iloc[0] if init_cash is None else init_cash], last.to_numpy()[:-1]])
    return pd.Series(last.to_numpy() / prev - 1.0, index=last.index, name="daily return")


def distribution_figure(result: Any, var_level: float = 0.95) -> go.Figure:
    """Histograms of the daily returns (left, with the historical daily VaR at ``var_level``) and of the
    closed trades' PnL (right, wins and losses in their colours)."""
    d = daily_returns(result.equity, _init_cash(result)) * 100.0
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=(f"Daily returns ({len(d):,} UTC days)", "PnL of the closed trades"),
    )
    fig.add_trace(
        go.Histogram(
            x=d.to_numpy(),
            name="daily returns",
            marker={"color": "#1f77b4"},
            opacity=0.8,
            hovertemplate="%{x}%: %{y} days<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    if len(d) >= 3:
        var = -float(np.quantile(d.to_numpy(), 1.0 - var_level))
        fig.add_vline(
            x=-var,
            line={"color": RED, "width": 1.5, "dash": "dash"},
            annotation_text=f"daily VaR {var_level:.0%}: {var:.2f}%",
            annotation_position="top left",
            row=1,
            col=1,
        )
    tr = getattr(result, "trades", None)
    pnl = np.empty(0)
    if tr is not None and len(tr) and "pnl" in tr:
        closed = tr[tr["status"].astype(str) != "open"] if "status" in tr else tr
        pnl = closed["pnl"].to_numpy(dtype="float64")
        pnl = pnl[np.isfinite(pnl)]
    if not len(pnl):
        fig.add_annotation(
            text="no closed trades", showarrow=False, x=0.5, y=0.5, xref="x2 domain", yref="y2 domain"
        )
    if len(pnl):
        # bins of 1/40 of the central 99 % of the PnL, with an edge at 0 (wins and losses never share a
        # bin); the axis shows that central range (a few outliers would squash the rest), zoom out for all
        lo, hi = (float(q) for q in np.quantile(pnl, [0.005, 0.995]))
        if hi <= lo:
            lo, hi = float(pnl.min()) - 0.5, float(pnl.max()) + 0.5
        size = (hi - lo) / 40
        start = math.floor(float(pnl.min()) / size) * size
        bins = {"start": start, "end": float(pnl.max()) + size, "size": size}
        clipped = bool((pnl < lo).any() or (pnl > hi).any())
        if clipped:
            fig.update_xaxes(range=[lo - size, hi + size], row=1, col=2)
            title = "PnL of the closed trades (central 99% shown; zoom out for all)"
            fig.layout.annotations[1].text = title
        for name, sel, color in (("wins", pnl > 0, GREEN), ("losses and break-evens", pnl <= 0, RED)):
            fig.add_trace(
                go.Histogram(
                    x=pnl[sel],
                    name=f"{name} ({int(sel.sum()):,})",
                    xbins=bins,
                    marker={"color": color},
                    opacity=0.85,
                    hovertemplate="PnL %{x}: %{y} trades<extra></extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_layout(
        barmode="overlay",
        height=340,
        bargap=0.05,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "xanchor": "right", "x": 1},
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
    )
    fig.update_xaxes(ticksuffix="%", title_text="daily return", row=1, col=1)
    fig.update_xaxes(title_text="trade PnL", row=1, col=2)
    fig.update_yaxes(title_text="days", row=1, col=1)
    fig.update_yaxes(title_text="trades", row=1, col=2)
    return fig


# ------------------------------------------------------------------------------------------ dashboards


def trade_analysis_figure(trades: pd.DataFrame, currency: str | None = None) -> go.Figure:
    """Closed trades: PnL against duration (left, days; wins green, losses red) and the PnL of each trade in
    exit order (right). ``trades`` needs ``entry_time``, ``exit_time`` and ``pnl`` (a backtest's or a session's
    round trips); open trades (``status == 'open'``) are left out."""
    t = trades
    if t is not None and len(t) and "status" in t:
        t = t[t["status"].astype(str) != "open"]
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=("PnL by duration", "PnL per trade")
    )
    unit = f" ({currency})" if currency else ""
    if t is None or not len(t) or "pnl" not in t:
        fig.add_annotation(text="no closed trades", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return fig
    t = t.sort_values("exit_time", kind="stable")
    dur = (pd.to_datetime(t["exit_time"], utc=True) - pd.to_datetime(t["entry_time"], utc=True)) / _DAY
    pnl = t["pnl"].to_numpy(dtype="float64")
    colors = [GREEN if p > 0 else RED for p in pnl]
    fig.add_trace(
        go.Scatter(
            x=dur.to_numpy(dtype="float64"),
            y=pnl,
            mode="markers",
            marker={"color": colors, "size": 7, "opacity": 0.8},
            hovertemplate="%{x:.2f} days: %{y:,.2f}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=[str(x) for x in pd.to_datetime(t["exit_time"], utc=True).dt.strftime("%Y-%m-%d %H:%M")],
            y=pnl,
            marker={"color": colors},
            hovertemplate="exit %{x}: %{y:,.2f}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="duration (days)", row=1, col=1)
    fig.update_xaxes(title_text="exit (UTC)", type="category", showticklabels=len(t) <= 40, row=1, col=2)
    fig.update_yaxes(title_text="PnL" + unit, row=1, col=1)
    fig.update_layout(height=360, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def equity_compare_figure(
    curves: Mapping[str, pd.Series], init_cash: Mapping[str, float | None]
) -> go.Figure:
    """Several equity curves on one chart as growth of 1 (each over its initial cash, else its first value),
    so that results with different capital compare."""
    fig = go.Figure()
    for name, eq in curves.items():
        eq = eq.astype("float64").dropna()
        if eq.empty:
            continue
        base = init_cash.get(name) or float(eq.iloc[0])
        fig.add_trace(
            go.Scatter(
                x=[str(x) for x in pd.DatetimeIndex(eq.index).strftime("%Y-%m-%d %H:%M")],
                y=(eq / base).to_numpy(),
                mode="lines",
                name=name,
                line={"width": 1.5},
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Equity, growth of 1", height=420, margin={"l": 60, "r": 20, "t": 50, "b": 40}, legend={"x": 0}
    )
    fig.update_xaxes(type="date", title_text="time (UTC)")
    fig.update_yaxes(title_text="growth of 1")
    return fig


def prediction_figure(
    close: pd.Series, prediction: pd.Series, realised: pd.Series, *, target: str = "direction"
) -> go.Figure:
    """A model's predictions beside the realised outcomes, under the price: the close (top); the prediction
    and what happened (bottom): for a ``direction`` model the predicted probability of an up move and the
    realised up (1) / down (0) move over the horizon, else the predicted and the realised forward return (%)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.55])
    xs = [str(x) for x in pd.DatetimeIndex(close.index).strftime("%Y-%m-%d %H:%M")]
    fig.add_trace(
        go.Scatter(x=xs, y=close.to_numpy(), name="close", line={"color": "#444", "width": 1}), 1, 1
    )
    scale = 1.0 if target == "direction" else 100.0
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=prediction.reindex(close.index).to_numpy() * scale,
            name="prediction",
            line={"color": "#1f77b4", "width": 1.5},
        ),
        2,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=realised.reindex(close.index).to_numpy() * scale,
            name="realised",
            mode="markers" if target == "direction" else "lines",
            marker={"color": "#ff7f0e", "size": 4},
            line={"color": "#ff7f0e", "width": 1},
        ),
        2,
        1,
    )
    fig.update_yaxes(title_text="close", row=1, col=1)
    fig.update_yaxes(
        title_text="P(up) / up move" if target == "direction" else "forward return (%)", row=2, col=1
    )
    fig.update_xaxes(type="date", title_text="time (UTC)", row=2, col=1)
    fig.update_layout(
        height=520,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        legend={"x": 0, "y": 1.08, "orientation": "h"},
    )
    return fig
