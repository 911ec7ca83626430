"""Performance and risk metrics of a backtest, from its equity curve and its closed trades.

Pure: numpy, pandas and the standard library only (no vectorbt, no I/O). Every number is defined below exactly, so that an
independent calculation reproduces it; ``tests/test_metrics.py`` does that with plain loops and scipy.stats and
cross-checks the matching conventions against vectorbt.

Inputs and notation
-------------------
``E_0 … E_{N-1}``
    the equity curve (portfolio value per bar) on a UTC :class:`~pandas.DatetimeIndex` ``t_0 < … < t_{N-1}``.
    NaN values are dropped first. The first bar is the starting capital: if the curve starts after the first
    fill (e.g. ``Portfolio.value()`` with fees paid on bar 0), prepend the initial cash one bar earlier.
``r_t = E_t / E_{t-1} - 1`` for ``t = 1 … N-1``
    the ``n = N - 1`` per-period simple returns. :func:`returns_from_equity` returns them aligned to the index
    with ``r_0 = 0``; that placeholder is **not** used by any statistic. A return from a non-positive previous
    value (after ruin) is 0: nothing is left to compound.
``ppy``
    periods per year: the argument, else :func:`periods_per_year` = 365 days / median bar spacing (crypto trades
    24/7, so a year is 365 days of 24 hours: 1h bars -> 8760, 1d bars -> 365).
``Y = (t_{N-1} - t_0) / 365 days``
    elapsed calendar years (for an index that is not a DatetimeIndex: ``n / ppy``).
``rf = (1 + risk_free) ** (1 / ppy) - 1``
    the per-period risk-free rate compounded from the annual ``risk_free``; ``x_t = r_t - rf`` are the
    excess returns.
``mean``, ``std``
    arithmetic mean over the ``n`` returns; ``std`` is the sample standard deviation (``ddof = 1``).
``a = 1 - var_level``
    the tail probability of VaR/CVaR (0.05 by default). ``Φ``, ``φ``: standard normal CDF and density.
``pnl_i``
    the ``pnl`` column of ``trades``, one row per closed trade (rows with NaN pnl are dropped). A win has
    ``pnl > 0``, a loss ``pnl < 0``; a break-even trade (``pnl == 0``) is neither but counts in ``n_trades``.

Metrics (keys of :func:`compute_metrics`)
-----------------------------------------
===============================  ==================================================================================
key                              definition
===============================  ==================================================================================
``total_return``                 ``E_{N-1} / E_0 - 1`` (= ``prod(1 + r_t) - 1``); 0 for a single bar.
``annual_return``                CAGR over calendar time: ``(E_{N-1} / E_0) ** (1 / Y) - 1``; -1 if
                                 ``E_{N-1} <= 0``; NaN if ``Y == 0``; ``+inf`` if it overflows a float (a short
                                 gain extrapolated to a year).
``annual_volatility``            ``std(r) * sqrt(ppy)``.
``sharpe``                       ``mean(x) / std(x) * sqrt(ppy)``; NaN if ``std(x) == 0``.
``sortino``                      ``mean(x) / DD * sqrt(ppy)`` with the downside deviation
                                 ``DD = sqrt(mean(min(x_t, 0) ** 2))`` over **all** n periods (target = rf);
                                 ``+inf`` if ``DD == 0`` and ``mean(x) > 0`` (no losing period), NaN if both 0.
``calmar``                       ``annual_return / |max_drawdown|``; NaN if ``max_drawdown == 0``.
``max_drawdown``                 ``min_t (E_t / max_{s<=t} E_s - 1)``: a fraction <= 0 (-0.25 is a 25 % drawdown).
``max_drawdown_duration_days``   the longest underwater spell, in days: from the last bar at the peak to the first
                                 bar back at or above it, or to the last bar if never recovered; 0 without a
                                 drawdown. (Index not datetime: bars * 365 / ppy.)
``win_rate``                     ``#(pnl > 0) / n_trades``.
``profit_factor``                ``sum(pnl > 0) / |sum(pnl < 0)|``; ``+inf`` with wins and no loss, NaN with neither.
``expectancy``                   ``mean(pnl)``: mean PnL per trade, in currency, break-evens included.
``avg_win``                      ``mean(pnl | pnl > 0)``; NaN without a win.
``avg_loss``                     ``mean(pnl | pnl < 0)`` (negative); NaN without a loss.
``exposure``                     share of the ``position`` bars with a non-zero position (NaN counts as flat).
``turnover``                     ``turnover_notional / mean(E) / Y``: equity turned over per year.
``n_trades``                     number of closed trades (rows of ``trades`` with a pnl). Rows with ``status``
                                 ``"open"`` are left out of every trade statistic above and below.
``n_open_trades``                trades still open at the end (``status == "open"``); 0 without that column.
``open_pnl``                     their marked-to-market PnL (sum of their ``pnl``), currency.
``var_hist``                     ``-Q_a(r)``: minus the a-quantile of the returns, linear interpolation
                                 (numpy's default, Hyndman–Fan type 7). Per period, a positive loss fraction.
``cvar_hist``                    ``-mean`` of the ``k = floor((n - 1) * a) + 1`` smallest returns (the order
                                 statistics at or below the interpolated quantile position; the floor is taken
                                 with a 1e-9 guard against rounding); positive loss.
``var_param``                    Gaussian: ``-(mean(r) + std(r) * Φ^-1(a))``.
``cvar_param``                   Gaussian: ``-(mean(r) - std(r) * φ(Φ^-1(a)) / a)``.
``beta``                         OLS slope of ``r_t`` on the benchmark's simple returns ``b_t = B_t / B_{t-1} - 1``
                                 (``B`` reindexed to the equity index): ``Σ(b - b̄)(r - r̄) / Σ(b - b̄)²`` over the
                                 bars where both are finite; NaN without a benchmark or with a constant one.
``skew``                         ``m3 / m2 ** 1.5`` with the central moments ``m_k = mean((r - mean(r)) ** k)``
                                 (population, ``bias=True``); NaN if ``m2 == 0``.
``kurtosis``                     ``m4 / m2 ** 2``, **non-excess** (3 for a normal law), as in the PSR formula.
``psr``                          :func:`psr` of the per-period Sharpe ``SR = mean(x) / std(x)`` (not annualised)
                                 against 0, with ``n``, ``skew`` and ``kurtosis`` above.
``dsr``                          :func:`deflated_sharpe`: the PSR against :func:`expected_max_sharpe` of
                                 ``n_trials`` trials; equals ``psr`` when ``n_trials == 1``.
===============================  ==================================================================================

The probabilistic Sharpe ratio (Bailey & López de Prado, 2012, "The Sharpe ratio efficient frontier")::

    PSR(SR*) = Φ( (SR - SR*) * sqrt(n - 1) / sqrt(1 - γ3 * SR + (γ4 - 1) / 4 * SR²) )

with ``γ3`` the skewness and ``γ4`` the non-excess kurtosis; NaN if the radicand is <= 0 or ``n < 2``. The deflated
Sharpe ratio (Bailey & López de Prado, 2014, "The deflated Sharpe ratio") sets ``SR*`` to the expected maximum of
``N = n_trials`` independent Sharpe estimates with variance ``V`` across trials (per period, not annualised)::

    SR0 = sqrt(V) * ((1 - γ) * Φ^-1(1 - 1/N) + γ * Φ^-1(1 - 1/(N e)))     γ = 0.5772… (Euler–Mascheroni)

and ``SR0 = 0`` for ``N == 1``.

Edge cases
----------
* No return (one bar or fewer): return-based metrics are NaN; ``total_return`` is 0 for one bar, NaN for none.
* Fewer than 3 returns: the distributional metrics (``annual_volatility``, ``sharpe``, ``sortino``, VaR/CVaR,
  ``beta``, ``skew``, ``kurtosis``, ``psr``, ``dsr``) are NaN; the path metrics (returns, drawdown) are computed.
* Zero volatility (e.g. a constant equity curve): ``annual_volatility`` 0, ``sharpe``/``skew``/``kurtosis``/
  ``psr``/``dsr`` NaN, ``sortino`` NaN (or ``+inf`` if every period gained), VaR/CVaR = minus the constant return.
* ``trades is None``: every trade metric, ``n_trades`` included, is NaN (unknown). An empty ``trades``: ``n_trades``
  is 0 and the other trade metrics are NaN.
* ``position``/``turnover_notional``/``benchmark`` not given: ``exposure``/``turnover``/``beta`` are NaN.
* The only infinities are ``profit_factor`` (wins, no loss), ``sortino`` (gains, no losing period) and an
  ``annual_return``/``calmar`` beyond the float range (see above). Invalid
  *arguments* (unsorted index, ``var_level`` outside (0, 1), ``n_trials < 1``, ``n_trials > 1`` without
  ``trials_sharpe_var``, non-empty ``trades`` without a ``pnl`` column, an index that is not a DatetimeIndex
  without ``ppy``) raise ``ValueError``/``TypeError``.

Differences from vectorbt's returns accessor (``year_freq='365 days'``)
---------------------------------------------------------------------------
vectorbt annualises with ``ann_factor = year_freq / freq`` and uses the returns it is given. Fed the same ``n``
returns (``r_1 … r_{N-1}``, without the placeholder ``r_0``) on a regular grid, ``total_return``,
``annual_return`` (its exponent ``ann_factor / n`` equals ``1 / Y``), ``annual_volatility``, ``sharpe`` (with
``risk_free = rf`` per period), ``sortino`` (``required_return = rf``), ``calmar``, ``max_drawdown``,
``var_hist`` (= ``-value_at_risk(cutoff=a)``), ``cvar_hist`` (= ``-cond_value_at_risk(cutoff=a)``) and ``beta``
agree to float rounding, and so does ``dsr`` with ``deflated_sharpe_ratio(risk_free=rf, var_sharpe=V * ppy,
nb_trials=N)`` (vectorbt takes the trials' variance annualised). For a ``vbt.Portfolio``, the value curve with the
initial cash prepended one bar earlier reproduces ``Portfolio.returns()`` and hence the same metrics, plus
``max_drawdown_duration_days`` (= ``drawdowns.max_duration()``) and, from ``trades.closed``, ``n_trades``,
``win_rate``, ``profit_factor`` and ``expectancy``. Differences: vectorbt's Sharpe is ``inf`` at zero volatility
(here NaN), it computes volatility/Sharpe from 2 returns (here 3 are needed), and with an irregular index its
CAGR counts bars while this one counts calendar time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from statistics import NormalDist
from types import MappingProxyType
from typing import Final

import numpy as np
import pandas as pd

from workbench.metricdefs import METRIC_KEYS as _METRIC_KEYS

_N = NormalDist()  # the standard normal (stdlib: importing scipy.stats costs ~0.5 s in a fresh process)

__all__ = [
    "DAYS_PER_YEAR",
    "EULER_GAMMA",
    "METRIC_KEYS",
    "PERIODS_PER_YEAR_CRYPTO",
    "compute_metrics",
    "deflated_sharpe",
    "drawdown",
    "epoch_ns",
    "expected_max_sharpe",
    "metrics_from_arrays",
    "normal_cdf",
    "periods_per_year",
    "psr",
    "returns_from_equity",
    "trade_stats",
]

DAYS_PER_YEAR: Final = 365.0
"""Calendar convention: crypto trades 24/7, so a year is 365 days of 24 hours (no trading-day calendar)."""

_YEAR: Final = pd.Timedelta(days=365)
_DAY: Final = pd.Timedelta(days=1)
_YEAR_NS: Final = float(_YEAR.value)
_DAY_NS: Final = _DAY.value

PERIODS_PER_YEAR_CRYPTO: Final[Mapping[str, float]] = MappingProxyType(
    {
        tf: _YEAR / pd.Timedelta(minutes=minutes)
        for tf, minutes in {
            "1m": 1,
            "3m": 3,
            "5m": 5,
            "15m": 15,
            "30m": 30,
            "1h": 60,
            "2h": 120,
            "4h": 240,
            "6h": 360,
            "8h": 480,
            "12h": 720,
            "1d": 1440,
            "3d": 3 * 1440,
            "1w": 7 * 1440,
        }.items()
    }
)
"""Periods per year by ccxt timeframe on the 365-day, 24-hour calendar: ``'1h'`` -> 8760, ``'1d'`` -> 365."""

EULER_GAMMA: Final = 0.5772156649015329
"""The Euler–Mascheroni constant γ of the expected-maximum-Sharpe formula."""

METRIC_KEYS: Final = _METRIC_KEYS
"""The keys of :func:`compute_metrics`, in order (from the registry :mod:`workbench.metricdefs`, which also
holds their labels, formats and groups)."""

_NAN: Final = float("nan")
_MIN_RETURNS: Final = 3


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """365 days divided by the median bar spacing of ``index``; NaN with fewer than 2 bars or zero spacing."""
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"periods_per_year needs a DatetimeIndex, not {type(index).__name__}; pass ppy")
    if len(index) < 2:
        return _NAN
    return _ppy_from_ns(epoch_ns(index))


def epoch_ns(index: pd.DatetimeIndex) -> np.ndarray:
    """The bar times as int64 nanoseconds since the epoch (UTC), whatever the index's unit."""
    return index.as_unit("ns").asi8


def _ppy_from_ns(t_ns: np.ndarray) -> float:
    """:func:`periods_per_year` of bar times in int64 ns (a regular grid without the median's sort)."""
    d = np.diff(t_ns)
    lo, hi = int(d.min()), int(d.max())
    step = pd.Timedelta(lo, unit="ns") if lo == hi else pd.TimedeltaIndex(d.view("m8[ns]")).median()
    if pd.isna(step) or step <= pd.Timedelta(0):
        return _NAN
    return float(_YEAR / step)


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Simple returns ``E_t / E_{t-1} - 1`` aligned to ``equity``'s index, with ``r_0 = 0``.

    A return from a non-positive previous value (after ruin) is 0. NaN values propagate.
    """
    v = np.asarray(equity, dtype=float)
    out = np.zeros(len(v))
    if len(v) > 1:
        prev, cur = v[:-1], v[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[1:] = np.where(prev <= 0, 0.0, cur / prev - 1.0)
    return pd.Series(out, index=equity.index, name="returns")


def drawdown(equity: pd.Series) -> pd.Series:
    """``E_t / max_{s<=t} E_s - 1``: 0 at a new high, negative below it (a fraction, -0.1 = 10 % under)."""
    v = np.asarray(equity, dtype=float)
    if len(v) == 0:
        return pd.Series(v, index=equity.index, name="drawdown")
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = v / np.maximum.accumulate(v) - 1.0
    return pd.Series(dd, index=equity.index, name="drawdown")


def psr(sr: float, n: float, skew: float, kurt: float, sr_benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (Bailey & López de Prado, 2012): P(true SR > ``sr_benchmark``).

    ``sr`` and ``sr_benchmark`` are per-period (not annualised) Sharpe ratios, ``n`` the number of returns,
    ``skew`` the skewness and ``kurt`` the **non-excess** kurtosis (3 for a normal law) of the returns::

        Φ((sr - sr_benchmark) * sqrt(n - 1) / sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))

    NaN if any input is NaN, ``n < 2`` or the radicand is not positive.
    """
    vals = (sr, n, skew, kurt, sr_benchmark)
    if any(v is None or not np.isfinite(v) for v in vals) or n < 2:
        return _NAN
    radicand = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if radicand <= 0:
        return _NAN
    z = (sr - sr_benchmark) * math.sqrt(n - 1.0) / math.sqrt(radicand)
    return normal_cdf(z)


def normal_cdf(z: float) -> float:
    """Φ(z) accurate in both tails: ``erfc(-z / √2) / 2``.

    ``(1 + erf(z / √2)) / 2`` (what :class:`statistics.NormalDist` computes) cancels to exactly 0 below
    z ≈ -8.3, which made a clearly negative PSR print as 0.0; ``erfc`` keeps full relative precision down to
    z ≈ -37.5 (Φ ≈ 5e-308). Below that the true value is under the smallest normal double and 0.0 is returned,
    which the formatting of reports shows as "< 1e-300", never as a plain 0.
    """
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def expected_max_sharpe(n_trials: int, var: float) -> float:
    """Expected maximum of ``n_trials`` independent Sharpe estimates of variance ``var`` (true SR 0).

    ``sqrt(var) * ((1 - γ) Φ^-1(1 - 1/N) + γ Φ^-1(1 - 1/(N e)))`` (Bailey & López de Prado, 2014); 0 for
    ``N == 1``. ``var`` is the variance of the per-period (not annualised) Sharpe ratios across the trials.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if var is None or not np.isfinite(var):
        return _NAN
    if var < 0:
        raise ValueError(f"the variance of the trials' Sharpe ratios must be >= 0, got {var}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    g = EULER_GAMMA
    return float(
        math.sqrt(var) * ((1.0 - g) * _N.inv_cdf(1.0 - 1.0 / n) + g * _N.inv_cdf(1.0 - 1.0 / (n * math.e)))
    )


def deflated_sharpe(
    sr: float, n: float, skew: float, kurt: float, n_trials: int, trials_sharpe_var: float | None
) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado, 2014): :func:`psr` against :func:`expected_max_sharpe`.

    Same units as :func:`psr`; ``trials_sharpe_var`` may be None only when ``n_trials == 1`` (then DSR = PSR).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return psr(sr, n, skew, kurt, 0.0)
    if trials_sharpe_var is None:
        raise ValueError(
            "trials_sharpe_var (variance of the trials' per-period Sharpe ratios) is needed when n_trials > 1"
        )
    return psr(sr, n, skew, kurt, expected_max_sharpe(n_trials, trials_sharpe_var))


def _max_drawdown_duration_days(
    v: np.ndarray, t_days: np.ndarray | Callable[[np.ndarray], np.ndarray], peak: np.ndarray | None = None
) -> float:
    """Longest spell under a previous peak, from the last bar at the peak to recovery (or the last bar).
    ``t_days``: each bar's time in days since the first, or a function giving it for an array of bar numbers
    (only the spells' ends are needed)."""
    n = len(v)
    if n == 0:
        return _NAN
    under = v < (np.maximum.accumulate(v) if peak is None else peak)
    if not under.any():
        return 0.0
    edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)  # first bar under water (>= 1: bar 0 is its own peak)
    ends = np.flatnonzero(edges == -1)  # first bar back at the peak, n if never
    days = t_days if callable(t_days) else t_days.__getitem__
    durations = days(np.minimum(ends, n - 1)) - days(starts - 1)
    return float(durations.max())


def _cagr(growth: float, years: float) -> float:
    if not np.isfinite(growth):
        return _NAN
    if growth <= 0:
        return -1.0
    try:
        return growth ** (1.0 / years) - 1.0
    except OverflowError:  # a short span extrapolated to a year: larger than any float
        return math.inf


def _trade_metrics(trades: pd.DataFrame | None) -> dict[str, float]:
    keys = ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss", "n_trades")
    out = dict.fromkeys(keys, _NAN)
    out["n_open_trades"] = _NAN
    out["open_pnl"] = _NAN
    if trades is None:
        return out
    out["n_open_trades"] = 0.0
    out["open_pnl"] = 0.0
    if len(trades) == 0:
        out["n_trades"] = 0.0
        return out
    if "pnl" not in trades.columns:
        raise ValueError(f"trades need a 'pnl' column; got {list(trades.columns)}")
    is_open = np.asarray(trades["status"] == "open") if "status" in trades.columns else None
    return trade_stats(np.asarray(trades["pnl"], dtype=float), is_open)


def trade_stats(pnl: np.ndarray, is_open: np.ndarray | None = None) -> dict[str, float]:
    """The trade metrics of :func:`compute_metrics` from the trades' ``pnl`` (in the trades' order) and,
    where the status is known, which of them are still open (reported apart, never as a win or a loss)."""
    keys = ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss", "n_trades")
    out = dict.fromkeys(keys, _NAN)
    out["n_open_trades"] = 0.0
    out["open_pnl"] = 0.0
    if len(pnl) == 0:
        out["n_trades"] = 0.0
        return out
    if is_open is not None:
        out["n_open_trades"] = float(is_open.sum())
        out["open_pnl"] = float(np.nansum(pnl[is_open]))
        pnl = pnl[~is_open]
    pnl = pnl[~np.isnan(pnl)]
    n = len(pnl)
    out["n_trades"] = float(n)
    if n == 0:
        return out
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_win, gross_loss = float(wins.sum()), float(-losses.sum())
    out["win_rate"] = len(wins) / n
    if gross_loss > 0:
        out["profit_factor"] = gross_win / gross_loss
    else:
        out["profit_factor"] = math.inf if gross_win > 0 else _NAN
    out["expectancy"] = float(pnl.mean())
    out["avg_win"] = float(wins.mean()) if len(wins) else _NAN
    out["avg_loss"] = float(losses.mean()) if len(losses) else _NAN
    return out


def _quantile_ranks(n: int, q: float) -> tuple[int, int]:
    """The ranks (0-based, ascending) of the two order statistics ``np.quantile(x, q)`` (method "linear")
    interpolates between, for ``n`` values."""
    g = math.floor(_virtual_index(n, q))
    return min(max(g, 0), n - 1), min(max(g + 1, 0), n - 1)


def _virtual_index(n: int, q: float) -> float:
    return (n - 1) * q  # as numpy's "linear" method computes it


def _quantile_linear(below: float, above: float, n: int, q: float) -> float:
    """``np.quantile(x, q)`` from its two order statistics (:func:`_quantile_ranks`), computed as numpy computes
    it (its ``_lerp``), so the same float; tests/test_metrics.py compares the two on many draws."""
    vi = _virtual_index(n, q)
    t = vi - math.floor(vi)
    below, above = float(below), float(above)
    diff = above - below
    return above - diff * (1.0 - t) if t >= 0.5 else below + diff * t


def _beta(r: np.ndarray, b: np.ndarray | None) -> float:
    """``b``: the benchmark's prices on the equity's bars (NaN where it has none)."""
    if b is None or len(b) < 2:
        return _NAN
    with np.errstate(divide="ignore", invalid="ignore"):
        br = b[1:] / b[:-1] - 1.0
    ok = np.isfinite(br) & np.isfinite(r)
    if ok.sum() < _MIN_RETURNS:
        return _NAN
    x, y = (br, r) if ok.all() else (br[ok], r[ok])  # (masks copy 10^6 values twice)
    xd = x - x.mean()
    sxx = float(np.dot(xd, xd))
    if sxx == 0:
        return _NAN
    return float(np.dot(xd, y - y.mean()) / sxx)


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame | None = None,
    *,
    position: pd.Series | None = None,
    turnover_notional: float | None = None,
    benchmark: pd.Series | None = None,
    ppy: float | None = None,
    risk_free: float = 0.0,
    var_level: float = 0.95,
    n_trials: int = 1,
    trials_sharpe_var: float | None = None,
) -> dict[str, float]:
    """Every metric of the module docstring's table, keyed as in :data:`METRIC_KEYS`.

    ``equity``: portfolio value per bar on a sorted UTC DatetimeIndex (any index works if ``ppy`` is given).
    ``trades``: one row per closed trade; only its ``pnl`` column is read. ``position``: signed exposure per
    bar. ``turnover_notional``: traded notional summed over the backtest. ``benchmark``: benchmark prices on
    the same index. ``risk_free``: annual rate. ``n_trials``/``trials_sharpe_var``: sweep size and variance of
    the trials' per-period Sharpe ratios, for the deflated Sharpe ratio.
    """
    if not 0.0 < var_level < 1.0:
        raise ValueError(f"var_level must lie in (0, 1), got {var_level}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials > 1 and trials_sharpe_var is None:
        raise ValueError(
            "trials_sharpe_var (variance of the trials' per-period Sharpe ratios) is needed when n_trials > 1"
        )

    eq = pd.Series(equity, dtype=float).dropna()
    index = eq.index
    is_dt = isinstance(index, pd.DatetimeIndex)
    if is_dt and not index.is_monotonic_increasing:
        raise ValueError("the equity index must be sorted in increasing time order")
    if ppy is None and not is_dt:
        raise TypeError("the equity index is not a DatetimeIndex: pass ppy (periods per year)")
    exposure = None
    if position is not None and len(position) > 0:
        p = np.nan_to_num(np.asarray(position, dtype=float), nan=0.0)
        exposure = float(np.mean(p != 0))
    bench = None
    if benchmark is not None and len(index) >= 2:
        bench = np.asarray(benchmark.reindex(index), dtype=float)
    return metrics_from_arrays(
        eq.to_numpy(),
        epoch_ns(index) if is_dt else None,
        trades=_trade_metrics(trades),
        exposure=exposure,
        turnover_notional=turnover_notional,
        benchmark=bench,
        ppy=ppy,
        risk_free=risk_free,
        var_level=var_level,
        n_trials=n_trials,
        trials_sharpe_var=trials_sharpe_var,
    )


def metrics_from_arrays(
    v: np.ndarray,
    t_ns: np.ndarray | None,
    *,
    trades: Mapping[str, float] | None = None,
    exposure: float | None = None,
    turnover_notional: float | None = None,
    benchmark: np.ndarray | None = None,
    ppy: float | None = None,
    risk_free: float = 0.0,
    var_level: float = 0.95,
    n_trials: int = 1,
    trials_sharpe_var: float | None = None,
) -> dict[str, float]:
    """:func:`compute_metrics` on numpy arrays (what ``run_backtest`` calls: no pandas on the way).

    ``v``: the equity curve without NaN; ``t_ns``: its bar times as int64 ns since the epoch, sorted (None:
    not a time index, ``ppy`` needed); ``trades``: :func:`trade_stats` (None: every trade metric NaN);
    ``exposure``: the share of bars with a position; ``benchmark``: its prices on the same bars.
    """
    if not 0.0 < var_level < 1.0:
        raise ValueError(f"var_level must lie in (0, 1), got {var_level}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials > 1 and trials_sharpe_var is None:
        raise ValueError(
            "trials_sharpe_var (variance of the trials' per-period Sharpe ratios) is needed when n_trials > 1"
        )
    is_dt = t_ns is not None
    n_bars = len(v)
    if ppy is None:
        if t_ns is None:
            raise TypeError("the equity index is not a DatetimeIndex: pass ppy (periods per year)")
        ppy = _ppy_from_ns(t_ns) if n_bars >= 2 else _NAN
    ppy = float(ppy)

    r = np.empty(max(n_bars - 1, 0))
    if n_bars > 1:  # as returns_from_equity: 0 after a non-positive value
        prev, cur = v[:-1], v[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(cur, prev, out=r)
        r -= 1.0
        ruined = prev <= 0
        if ruined.any():
            r[ruined] = 0.0
    n = len(r)

    out = dict.fromkeys(METRIC_KEYS, _NAN)

    # Path metrics: need bars, not a distribution.
    if is_dt:
        t_first = t_ns[0] if n_bars else 0

        def t_days(i: np.ndarray) -> np.ndarray:  # (t_ns - t_ns[0]) / day, at the bars asked for only
            return (t_ns[i] - t_first) / _DAY_NS

        years = float(t_ns[-1] - t_ns[0]) / _YEAR_NS if n_bars >= 2 else _NAN
    else:
        step_days = DAYS_PER_YEAR / ppy

        def t_days(i: np.ndarray) -> np.ndarray:  # as np.arange(n_bars, dtype=float) * step_days at i
            return np.asarray(i, dtype=float) * step_days

        years = n / ppy if n_bars >= 2 else _NAN
    if n_bars >= 1:
        growth = float(v[-1] / v[0]) if v[0] > 0 else _NAN
        out["total_return"] = growth - 1.0
        if n_bars >= 2 and years > 0:
            out["annual_return"] = _cagr(growth, years)
        peak = np.maximum.accumulate(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["max_drawdown"] = float((v / peak - 1.0).min())
        out["max_drawdown_duration_days"] = _max_drawdown_duration_days(v, t_days, peak)
        if out["max_drawdown"] < 0:
            out["calmar"] = out["annual_return"] / abs(out["max_drawdown"])
    if turnover_notional is not None and n_bars >= 2 and years > 0:
        mean_eq = float(v.mean())
        if mean_eq > 0:
            out["turnover"] = float(turnover_notional) / mean_eq / years
    if exposure is not None:
        out["exposure"] = float(exposure)

    if trades is None:
        out.update(_trade_metrics(None))
    else:
        out.update(trades)

    # Distributional metrics: need at least 3 returns.
    if n >= _MIN_RETURNS and np.isfinite(ppy) and ppy > 0:
        rf = (1.0 + risk_free) ** (1.0 / ppy) - 1.0
        x = r - rf
        mu, sd = float(r.mean()), float(r.std(ddof=1))
        mx, sdx = (mu, sd) if rf == 0.0 else (float(x.mean()), float(x.std(ddof=1)))
        root = math.sqrt(ppy)
        out["annual_volatility"] = sd * root
        sr = mx / sdx if sdx > 0 else _NAN
        out["sharpe"] = sr * root
        dd_dev = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
        if dd_dev > 0:
            out["sortino"] = mx / dd_dev * root
        elif mx > 0:
            out["sortino"] = math.inf

        a = 1.0 - var_level
        k = math.floor((n - 1) * a + 1e-9) + 1
        # one partition for both: the k smallest in ascending order, as np.sort(r)[:k] (so the same sum)
        # without sorting all n, and the two order statistics np.quantile(r, a) interpolates between
        lo, hi = _quantile_ranks(n, a)
        part = np.partition(r, sorted({lo, hi, k - 1})) if k < n else np.sort(r)
        if np.isfinite(part[lo]) and np.isfinite(part[hi]):
            out["var_hist"] = -_quantile_linear(part[lo], part[hi], n, a) + 0.0
        else:  # NaN / inf in the returns: numpy's own rules for them
            out["var_hist"] = -float(np.quantile(r, a)) + 0.0
        smallest = np.sort(part[:k])
        out["cvar_hist"] = -float(smallest.mean()) + 0.0
        z = float(_N.inv_cdf(a))
        out["var_param"] = -(mu + sd * z) + 0.0
        out["cvar_param"] = -(mu - sd * float(_N.pdf(z)) / a) + 0.0

        dev = r - mu
        dev2 = dev * dev
        m2 = float(np.mean(dev2))
        if m2 > 0:  # products, not pow (10x faster; each term within an ulp of dev**3, dev**4)
            out["skew"] = float(np.mean(dev2 * dev)) / m2**1.5
            out["kurtosis"] = float(np.mean(dev2 * dev2)) / m2**2
        out["psr"] = psr(sr, n, out["skew"], out["kurtosis"])
        out["dsr"] = deflated_sharpe(sr, n, out["skew"], out["kurtosis"], n_trials, trials_sharpe_var)
        out["beta"] = _beta(r, benchmark)

    return {k: float(val) for k, val in out.items()}
