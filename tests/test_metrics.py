"""Backtest metrics: every number against an independent plain computation (loops, math, scipy.stats), hand-made
curves with known answers, the PSR/DSR formulas worked by hand and from the 2014 paper, and vectorbt where its
conventions match exactly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from workbench.backtest import metrics as M
from workbench.backtest.metrics import (
    METRIC_KEYS,
    PERIODS_PER_YEAR_CRYPTO,
    compute_metrics,
    deflated_sharpe,
    drawdown,
    expected_max_sharpe,
    periods_per_year,
    psr,
    returns_from_equity,
)

RTOL = 1e-9
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def hourly(n: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="1h")


def daily(n: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="1D")


def random_case(seed: int, n: int = 600):
    """A random hourly equity curve, a correlated benchmark, positions and trades."""
    rng = np.random.default_rng(seed)
    idx = hourly(n)
    bench_r = rng.normal(0.0, 0.01, n)
    strat_r = 0.0002 + 0.6 * bench_r + rng.standard_t(4, n) * 0.004
    strat_r[0] = 0.0
    equity = pd.Series(10_000.0 * np.cumprod(1.0 + strat_r), idx)
    benchmark = pd.Series(30_000.0 * np.cumprod(1.0 + bench_r), idx)
    position = pd.Series(np.where(rng.random(n) < 0.4, 0.0, rng.normal(0, 1, n)), idx)
    position.iloc[::17] = np.nan
    pnl = rng.normal(5.0, 50.0, 40)
    pnl[:3] = 0.0
    trades = pd.DataFrame({"pnl": pnl, "direction": ["long"] * 40})
    return equity, benchmark, position, trades


# --------------------------------------------------------------------------------------------------------------
# Plain, independent reference computations
# --------------------------------------------------------------------------------------------------------------


def plain_metrics(
    equity: pd.Series,
    *,
    ppy: float,
    risk_free: float = 0.0,
    level_pct: int = 95,
    benchmark: pd.Series | None = None,
    position: pd.Series | None = None,
    turnover_notional: float | None = None,
    trades: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Loops and scipy.stats, written from the definitions without looking at the module's code."""
    v = [float(x) for x in equity]
    t = list(equity.index)
    r = [v[i] / v[i - 1] - 1.0 for i in range(1, len(v))]
    n = len(r)
    years = (t[-1] - t[0]).total_seconds() / (365 * 86400)
    rf = (1.0 + risk_free) ** (1.0 / ppy) - 1.0
    x = [ri - rf for ri in r]

    def mean(a):
        return sum(a) / len(a)

    def sstd(a):
        m = mean(a)
        return math.sqrt(sum((ai - m) ** 2 for ai in a) / (len(a) - 1))

    out: dict[str, float] = {}
    out["total_return"] = v[-1] / v[0] - 1.0
    out["annual_return"] = (v[-1] / v[0]) ** (1.0 / years) - 1.0
    out["annual_volatility"] = sstd(r) * math.sqrt(ppy)
    out["sharpe"] = mean(x) / sstd(x) * math.sqrt(ppy)
    down = math.sqrt(sum(min(xi, 0.0) ** 2 for xi in x) / n)
    out["sortino"] = mean(x) / down * math.sqrt(ppy)

    peak, mdd = v[0], 0.0
    for vi in v:
        peak = max(peak, vi)
        mdd = min(mdd, vi / peak - 1.0)
    out["max_drawdown"] = mdd
    out["calmar"] = out["annual_return"] / abs(mdd)
    out["max_drawdown_duration_days"] = plain_dd_duration(v, t)

    srt = sorted(r)
    a = (100 - level_pct) / 100
    h = (n - 1) * a
    lo = math.floor(h)
    q = srt[lo] + (h - lo) * (srt[min(lo + 1, n - 1)] - srt[lo])
    out["var_hist"] = -q
    k = (n - 1) * (100 - level_pct) // 100 + 1  # integer arithmetic: no rounding at the floor
    out["cvar_hist"] = -mean(srt[:k])
    mu, sd = mean(r), sstd(r)
    out["var_param"] = -stats.norm(mu, sd).ppf(a)
    q_param = stats.norm(mu, sd).ppf(a)
    out["cvar_param"] = -stats.norm(mu, sd).expect(lambda z: z, ub=q_param, conditional=True)

    out["skew"] = float(stats.skew(r, bias=True))
    out["kurtosis"] = float(stats.kurtosis(r, fisher=False, bias=True))
    sr = mean(x) / sstd(x)
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - out["skew"] * sr + (out["kurtosis"] - 1) / 4 * sr**2)
    out["psr"] = float(stats.norm.cdf(z))

    if benchmark is not None:
        b = [float(y) for y in benchmark]
        br = [b[i] / b[i - 1] - 1.0 for i in range(1, len(b))]
        out["beta"] = float(stats.linregress(br, r).slope)
    if position is not None:
        count = sum(1 for p in position if not (isinstance(p, float) and math.isnan(p)) and p != 0)
        out["exposure"] = count / len(position)
    if turnover_notional is not None:
        out["turnover"] = turnover_notional / mean(v) / years
    if trades is not None:
        pnl = list(trades["pnl"])
        wins = [p for p in pnl if p > 0]
        losses = [p for p in pnl if p < 0]
        out["n_trades"] = float(len(pnl))
        out["win_rate"] = len(wins) / len(pnl)
        out["profit_factor"] = sum(wins) / -sum(losses)
        out["expectancy"] = mean(pnl)
        out["avg_win"] = mean(wins)
        out["avg_loss"] = mean(losses)
    return out


def plain_dd_duration(v: list[float], t: list[pd.Timestamp]) -> float:
    """Walk the curve: remember the last bar at the running peak; an underwater spell ends on recovery."""
    best = 0.0
    peak_val, peak_t = v[0], t[0]
    under = False
    for vi, ti in zip(v, t, strict=True):
        if vi >= peak_val:
            if under:
                best = max(best, (ti - peak_t).total_seconds() / 86400)
                under = False
            peak_val, peak_t = vi, ti
        else:
            under = True
    if under:
        best = max(best, (t[-1] - peak_t).total_seconds() / 86400)
    return best


def assert_close(
    got: dict[str, float], want: dict[str, float], rtol: float = RTOL, atol: float = 0.0
) -> None:
    for key, w in want.items():
        assert got[key] == pytest.approx(w, rel=rtol, abs=atol), key


# --------------------------------------------------------------------------------------------------------------
# Calendar, returns and drawdown helpers
# --------------------------------------------------------------------------------------------------------------


def test_periods_per_year_365_day_calendar():
    assert periods_per_year(hourly(10)) == 8760.0
    assert periods_per_year(daily(10)) == 365.0
    assert periods_per_year(pd.date_range(T0, periods=10, freq="15min")) == 365 * 96
    gappy = hourly(20).delete([3, 4, 5])  # one gap does not move the median spacing
    assert periods_per_year(gappy) == 8760.0
    assert math.isnan(periods_per_year(hourly(1)))
    assert PERIODS_PER_YEAR_CRYPTO["1h"] == 8760.0
    assert PERIODS_PER_YEAR_CRYPTO["1d"] == 365.0
    assert PERIODS_PER_YEAR_CRYPTO["1m"] == 525_600.0
    with pytest.raises(TypeError):
        periods_per_year(pd.RangeIndex(5))  # type: ignore[arg-type]


def test_returns_and_drawdown_by_hand():
    eq = pd.Series([100.0, 110.0, 99.0, 120.0], daily(4))
    r = returns_from_equity(eq)
    assert list(r.index) == list(eq.index)
    assert r.tolist() == pytest.approx([0.0, 0.1, -0.1, 120 / 99 - 1], rel=1e-15)
    dd = drawdown(eq)
    assert dd.tolist() == pytest.approx([0.0, 0.0, -0.1, 0.0], abs=1e-15)
    assert (dd <= 0).all()
    ruin = returns_from_equity(pd.Series([100.0, 0.0, 0.0, 5.0], daily(4)))
    assert ruin.tolist() == [0.0, -1.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------------------
# Hand-made curves with known answers
# --------------------------------------------------------------------------------------------------------------


def test_max_drawdown_and_duration_known_answers():
    # Days are bar positions. Spell 1: peak 120 on day 1, down to 60 (-50 %), back to 120 on day 8 -> 7 days.
    # Spell 2: peak 130 on day 9, 117 on day 10 and 120 on the last day (11): not recovered -> 2 days.
    eq = pd.Series([100, 120, 90, 60, 80, 100, 110, 119, 120, 130, 117, 120.0], daily(12))
    m = compute_metrics(eq)
    assert m["max_drawdown"] == pytest.approx(-0.5, abs=1e-15)
    assert m["max_drawdown_duration_days"] == 7.0  # day 1 (the last bar at 120) to day 8
    assert m["total_return"] == pytest.approx(0.2, abs=1e-15)

    # Unrecovered spell longer than any recovered one, with a tie at the peak (duration from the LAST bar at it).
    eq2 = pd.Series([100, 100, 90, 100, 100, 100, 95, 90, 85, 99.0], daily(10))
    m2 = compute_metrics(eq2)
    assert m2["max_drawdown"] == pytest.approx(-0.15, abs=1e-15)
    assert m2["max_drawdown_duration_days"] == 4.0  # day 5 (last 100) to day 9, never recovered

    # Irregular timestamps: durations are calendar time, not bars (peak 101 at hour 1, back at 101 at hour 51).
    idx = pd.DatetimeIndex([T0 + pd.Timedelta(hours=h) for h in (0, 1, 2, 50, 51)])
    eq3 = pd.Series([100, 101, 100, 100.5, 101.0], idx)
    assert compute_metrics(eq3)["max_drawdown_duration_days"] == pytest.approx(50 / 24, rel=1e-15)

    # No drawdown at all.
    up = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0], daily(5))
    mu = compute_metrics(up)
    assert mu["max_drawdown"] == 0.0
    assert mu["max_drawdown_duration_days"] == 0.0
    assert math.isnan(mu["calmar"])


def test_cagr_over_calendar_time():
    # 100 -> 121 over exactly two 365-day years: 10 % a year, whatever the bars in between.
    idx = pd.DatetimeIndex([T0, T0 + pd.Timedelta(days=100), T0 + pd.Timedelta(days=730)])
    m = compute_metrics(pd.Series([100.0, 90.0, 121.0], idx), ppy=365.0)
    assert m["annual_return"] == pytest.approx(0.1, rel=1e-12)
    assert m["total_return"] == pytest.approx(0.21, rel=1e-12)
    assert m["calmar"] == pytest.approx(0.1 / 0.1, rel=1e-12)
    # Turnover: 2,000,000 traded on a mean equity of (100 + 90 + 121) / 3 over 2 years.
    m = compute_metrics(pd.Series([100.0, 90.0, 121.0], idx), ppy=365.0, turnover_notional=2e6)
    assert m["turnover"] == pytest.approx(2e6 / (311 / 3) / 2, rel=1e-12)


def test_trade_metrics_by_hand():
    idx = daily(5)
    eq = pd.Series([100.0, 101, 102, 101, 103], idx)
    trades = pd.DataFrame({"pnl": [10.0, -5.0, 0.0, 20.0, -15.0, np.nan]})  # NaN: not a closed trade
    m = compute_metrics(eq, trades)
    assert m["n_trades"] == 5.0
    assert m["win_rate"] == 2 / 5
    assert m["profit_factor"] == 30 / 20
    assert m["expectancy"] == 10 / 5
    assert m["avg_win"] == 15.0
    assert m["avg_loss"] == -10.0

    only_wins = compute_metrics(eq, pd.DataFrame({"pnl": [1.0, 2.0]}))
    assert only_wins["profit_factor"] == math.inf  # documented: wins and no loss
    assert math.isnan(only_wins["avg_loss"])
    flat = compute_metrics(eq, pd.DataFrame({"pnl": [0.0, 0.0]}))
    assert math.isnan(flat["profit_factor"])
    assert flat["win_rate"] == 0.0
    none = compute_metrics(eq, pd.DataFrame(columns=["pnl"]))
    assert none["n_trades"] == 0.0
    assert all(
        math.isnan(none[k]) for k in ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss")
    )
    unknown = compute_metrics(eq)
    assert math.isnan(unknown["n_trades"])


def test_exposure_by_hand():
    eq = pd.Series([100.0, 101, 102, 101, 103], daily(5))
    pos = pd.Series([0.0, 1.5, -2.0, np.nan, 0.0], daily(5))
    assert compute_metrics(eq, position=pos)["exposure"] == 2 / 5
    assert math.isnan(compute_metrics(eq)["exposure"])


# --------------------------------------------------------------------------------------------------------------
# Random curves against the plain computation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("risk_free", [0.0, 0.04])
def test_random_curve_against_plain_computation(seed: int, risk_free: float):
    equity, benchmark, position, trades = random_case(seed)
    got = compute_metrics(
        equity,
        trades,
        position=position,
        turnover_notional=1.234e7,
        benchmark=benchmark,
        risk_free=risk_free,
    )
    want = plain_metrics(
        equity,
        ppy=8760.0,
        risk_free=risk_free,
        benchmark=benchmark,
        position=position,
        turnover_notional=1.234e7,
        trades=trades,
    )
    assert set(got) == set(METRIC_KEYS)
    cvar_param = want.pop("cvar_param")  # numerical integration in the reference
    assert_close(got, want)
    assert got["cvar_param"] == pytest.approx(cvar_param, rel=1e-7)
    assert got["dsr"] == got["psr"]


@pytest.mark.parametrize("level_pct", [90, 95, 99])
def test_var_levels_against_plain_computation(level_pct: int):
    equity, *_ = random_case(7, n=401)
    got = compute_metrics(equity, var_level=level_pct / 100)
    want = plain_metrics(equity, ppy=8760.0, level_pct=level_pct)
    for key in ("var_hist", "cvar_hist", "var_param"):
        assert got[key] == pytest.approx(want[key], rel=RTOL), key
    assert got["cvar_param"] == pytest.approx(want["cvar_param"], rel=1e-7)
    assert got["cvar_hist"] >= got["var_hist"] > 0
    assert got["cvar_param"] >= got["var_param"]


def test_daily_curve_and_explicit_ppy():
    equity, *_ = random_case(11, n=300)
    eq = pd.Series(equity.to_numpy(), daily(300))
    assert_close(compute_metrics(eq), plain_metrics_no_cvar(eq, 365.0))
    # An explicit ppy annualises volatility/Sharpe; CAGR still uses calendar time.
    m = compute_metrics(eq, ppy=252.0)
    want = plain_metrics_no_cvar(eq, 252.0)
    assert m["sharpe"] == pytest.approx(want["sharpe"], rel=RTOL)
    assert m["annual_return"] == pytest.approx(want["annual_return"], rel=RTOL)


def plain_metrics_no_cvar(eq: pd.Series, ppy: float) -> dict[str, float]:
    want = plain_metrics(eq, ppy=ppy)
    want.pop("cvar_param")
    return want


def test_non_datetime_index_needs_ppy():
    equity, *_ = random_case(3, n=100)
    eq = equity.reset_index(drop=True)
    with pytest.raises(TypeError):
        compute_metrics(eq)
    m = compute_metrics(eq, ppy=8760.0)
    ref = compute_metrics(equity)
    for key in ("sharpe", "annual_return", "max_drawdown_duration_days", "var_hist", "psr"):
        assert m[key] == pytest.approx(ref[key], rel=1e-9), key


# --------------------------------------------------------------------------------------------------------------
# PSR and DSR
# --------------------------------------------------------------------------------------------------------------


def test_psr_worked_by_hand():
    # SR = 0.1 per period, 101 returns, normal moments: z = 0.1 * 10 / sqrt(1 + 0.5 * 0.01) = 0.9975093...
    z = 1.0 / math.sqrt(1.005)
    assert z == pytest.approx(0.99750934, rel=1e-8)
    assert psr(0.1, 101, 0.0, 3.0) == pytest.approx(stats.norm.cdf(z), rel=1e-12)
    assert psr(0.1, 101, 0.0, 3.0) == pytest.approx(0.8407, abs=1e-4)  # normal table at z = 0.9975
    # Negative skew and fat tails widen the denominator: sqrt(1 + 0.2 + 2.25 * 0.01) = sqrt(1.2225).
    z2 = 0.1 * 10 / math.sqrt(1.2225)
    assert psr(0.1, 101, -2.0, 10.0) == pytest.approx(stats.norm.cdf(z2), rel=1e-12)
    assert psr(0.1, 101, 0.0, 3.0, sr_benchmark=0.1) == 0.5
    assert math.isnan(psr(0.5, 100, 10.0, 3.0))  # radicand 1 - 5 + 0.125 < 0
    assert math.isnan(psr(float("nan"), 100, 0.0, 3.0))
    assert math.isnan(psr(0.1, 1, 0.0, 3.0))


def test_dsr_paper_example():
    """Bailey & López de Prado (2014), section 'A numerical example': annualised SR 2.5 over 5 years of daily
    returns (T = 1250), N = 100 trials whose annualised Sharpe ratios have variance 0.5, skew -3, kurtosis 10.
    The paper reports E[max SR] = 0.1132 per period and DSR = 0.9004."""
    sr = 2.5 / math.sqrt(250)
    var = 0.5 / 250
    sr0 = expected_max_sharpe(100, var)
    g = np.euler_gamma
    by_hand = math.sqrt(var) * ((1 - g) * stats.norm.ppf(0.99) + g * stats.norm.ppf(1 - 1 / (100 * math.e)))
    assert sr0 == pytest.approx(by_hand, rel=1e-12)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe(sr, 1250, -3.0, 10.0, 100, var)
    z = (sr - by_hand) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 9 / 4 * sr**2)
    assert dsr == pytest.approx(stats.norm.cdf(z), rel=1e-12)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    assert dsr < psr(sr, 1250, -3.0, 10.0)


@pytest.mark.parametrize("n_trials", [10, 100, 1000])
def test_expected_max_sharpe_approximates_the_exact_expectation(n_trials: int):
    # E[max of N iid N(0, 1)] = ∫ x N φ(x) Φ(x)^(N-1) dx; the paper's closed form approximates it within ~2 %.
    exact, _ = integrate.quad(
        lambda x: x * n_trials * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n_trials - 1), -12, 12, limit=200
    )
    assert expected_max_sharpe(n_trials, 1.0) == pytest.approx(exact, rel=0.03)
    assert expected_max_sharpe(n_trials, 4.0) == pytest.approx(
        2 * expected_max_sharpe(n_trials, 1.0), rel=1e-12
    )


def test_expected_max_sharpe_edges():
    assert expected_max_sharpe(1, 0.3) == 0.0
    assert deflated_sharpe(0.05, 500, 0.0, 3.0, 1, None) == psr(0.05, 500, 0.0, 3.0)
    with pytest.raises(ValueError):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError):
        deflated_sharpe(0.05, 500, 0.0, 3.0, 5, None)


@settings(max_examples=60, deadline=None)
@given(
    sr=st.floats(0.01, 0.3),
    n=st.integers(50, 5000),
    skew=st.floats(-1.0, 1.0),
    kurt=st.floats(2.0, 8.0),
    var=st.floats(1e-5, 1e-2),
    n_trials=st.integers(2, 500),
)
def test_dsr_properties(sr: float, n: int, skew: float, kurt: float, var: float, n_trials: int):
    p = psr(sr, n, skew, kurt)
    d = deflated_sharpe(sr, n, skew, kurt, n_trials, var)
    assert 0.0 <= d <= p <= 1.0
    assert deflated_sharpe(sr, n, skew, kurt, n_trials * 2, var) <= d  # more trials, more deflation
    assert deflated_sharpe(sr, n, skew, kurt, n_trials, var * 2) <= d
    assert psr(sr, n * 4, skew, kurt) >= p  # more evidence for a positive SR


def test_psr_tends_to_one_with_more_returns():
    values = [psr(0.05, n, -0.5, 5.0) for n in (10, 100, 1000, 10_000, 100_000)]
    assert values == sorted(values)
    assert values[-1] > 0.999999
    assert psr(-0.05, 100_000, -0.5, 5.0) < 1e-6


def test_compute_metrics_dsr_with_trials():
    equity, *_ = random_case(5, n=2000)
    m1 = compute_metrics(equity)
    m = compute_metrics(equity, n_trials=50, trials_sharpe_var=1e-5)
    sr = m["sharpe"] / math.sqrt(8760)
    want = deflated_sharpe(sr, 1999, m["skew"], m["kurtosis"], 50, 1e-5)
    assert m["dsr"] == pytest.approx(want, rel=1e-12)
    assert m["psr"] == m1["psr"] == m1["dsr"]
    assert m["dsr"] < m["psr"]
    with pytest.raises(ValueError):
        compute_metrics(equity, n_trials=5)


# --------------------------------------------------------------------------------------------------------------
# Edge cases: NaN or a documented value, never an exception or a stray inf
# --------------------------------------------------------------------------------------------------------------


def finite_or_nan(m: dict[str, float], allowed_inf: tuple[str, ...] = ()) -> None:
    for k, val in m.items():
        if k not in allowed_inf:
            assert not math.isinf(val), k


def test_constant_equity():
    m = compute_metrics(pd.Series(100.0, hourly(50)), pd.DataFrame(columns=["pnl"]), turnover_notional=0.0)
    finite_or_nan(m)
    assert m["total_return"] == 0.0
    assert m["annual_return"] == 0.0
    assert m["annual_volatility"] == 0.0
    assert m["max_drawdown"] == 0.0
    assert m["max_drawdown_duration_days"] == 0.0
    assert m["var_hist"] == 0.0 and m["cvar_hist"] == 0.0 and m["var_param"] == 0.0
    assert math.copysign(1.0, m["var_hist"]) == 1.0  # no negative zero
    assert m["turnover"] == 0.0
    for k in ("sharpe", "sortino", "calmar", "skew", "kurtosis", "psr", "dsr"):
        assert math.isnan(m[k]), k


def test_monotonic_gains_give_infinite_sortino():
    eq = pd.Series(100.0 * np.cumprod(np.r_[1.0, np.linspace(1.001, 1.01, 30)]), hourly(31))
    m = compute_metrics(eq)
    assert m["sortino"] == math.inf
    finite_or_nan(m, allowed_inf=("sortino",))
    assert m["sharpe"] > 0 and math.isfinite(m["sharpe"])


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_short_curves(n: int):
    eq = pd.Series(100.0 + np.arange(n) * [1, -1, 1][:n], hourly(n), dtype=float)
    m = compute_metrics(eq, pd.DataFrame({"pnl": [1.0]}), ppy=8760.0)
    assert set(m) == set(METRIC_KEYS)
    finite_or_nan(m, allowed_inf=("profit_factor",))
    assert m["profit_factor"] == math.inf
    distributional = (
        "annual_volatility",
        "sharpe",
        "sortino",
        "var_hist",
        "cvar_hist",
        "var_param",
        "skew",
        "psr",
    )
    for k in distributional:
        assert math.isnan(m[k]), k  # fewer than 3 returns
    if n == 0:
        assert math.isnan(m["total_return"]) and math.isnan(m["max_drawdown"])
    if n == 1:
        assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0 and math.isnan(m["annual_return"])
    if n >= 2:
        assert m["total_return"] == pytest.approx(eq.iloc[-1] / eq.iloc[0] - 1)
    assert m["n_trades"] == 1.0


def test_cagr_overflow_is_inf_not_an_exception():
    m = compute_metrics(pd.Series([100.0, 150.0, 200.0], hourly(3)))
    assert m["annual_return"] == math.inf
    assert math.isnan(m["calmar"])  # no drawdown
    assert m["total_return"] == 1.0


def test_four_bars_is_enough():
    m = compute_metrics(pd.Series([100.0, 101.0, 100.0, 102.0], hourly(4)))
    assert all(math.isfinite(m[k]) for k in ("annual_volatility", "sharpe", "sortino", "skew", "psr"))


def test_nan_bars_are_dropped_and_ruin_is_handled():
    equity, *_ = random_case(9, n=200)
    holed = equity.copy()
    holed.iloc[[5, 50]] = np.nan
    assert compute_metrics(holed)["sharpe"] == pytest.approx(
        compute_metrics(equity.drop(equity.index[[5, 50]]))["sharpe"]
    )
    ruin = pd.Series([100.0, 50.0, 0.0, 0.0, 0.0], daily(5))
    m = compute_metrics(ruin)
    finite_or_nan(m)
    assert m["total_return"] == -1.0 and m["annual_return"] == -1.0 and m["max_drawdown"] == -1.0
    assert m["max_drawdown_duration_days"] == 4.0


def test_beta_edges():
    equity, benchmark, *_ = random_case(4, n=100)
    assert math.isnan(compute_metrics(equity)["beta"])
    assert math.isnan(compute_metrics(equity, benchmark=pd.Series(5.0, equity.index))["beta"])
    assert compute_metrics(equity, benchmark=equity)["beta"] == pytest.approx(1.0, rel=1e-12)
    # A benchmark with a missing bar: the two returns around it are left out of the regression.
    b = benchmark.copy()
    b.iloc[40] = np.nan
    r = equity.pct_change().to_numpy()[1:]
    br = b.pct_change(fill_method=None).to_numpy()[1:]
    ok = np.isfinite(br)
    want = stats.linregress(br[ok], r[ok]).slope
    assert compute_metrics(equity, benchmark=b)["beta"] == pytest.approx(want, rel=1e-9)


def test_invalid_arguments():
    eq = pd.Series([100.0, 101.0, 102.0, 101.0], hourly(4))
    with pytest.raises(ValueError):
        compute_metrics(eq, var_level=1.0)
    with pytest.raises(ValueError):
        compute_metrics(eq, n_trials=0)
    with pytest.raises(ValueError):
        compute_metrics(eq.iloc[::-1])
    with pytest.raises(ValueError):
        compute_metrics(eq, pd.DataFrame({"profit": [1.0]}))


def test_module_is_pure():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(M))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # the metric registry is the only workbench module it reads (itself standard library only)
            imported.add("metricdefs" if node.module == "workbench.metricdefs" else node.module.split(".")[0])
    assert imported <= {
        "metricdefs",
        "__future__",
        "math",
        "collections",
        "types",
        "typing",
        "numpy",
        "pandas",
        "scipy",
        "statistics",
    }
    for key in METRIC_KEYS:
        assert f"``{key}``" in (M.__doc__ or ""), key


# --------------------------------------------------------------------------------------------------------------
# vectorbt cross-checks (the conventions that match exactly; see the module docstring for the others)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vbt():
    return pytest.importorskip("vectorbt")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("risk_free", [0.0, 0.05])
def test_vectorbt_returns_accessor(vbt, seed: int, risk_free: float):
    equity, benchmark, *_ = random_case(seed, n=800)
    m = compute_metrics(equity, benchmark=benchmark, risk_free=risk_free, n_trials=20, trials_sharpe_var=2e-5)
    rets = returns_from_equity(equity).iloc[1:]  # the n real returns, without the r_0 placeholder
    bench_rets = benchmark.pct_change().iloc[1:]
    acc = rets.vbt.returns(freq="1h", year_freq="365 days", benchmark_rets=bench_rets)
    assert acc.ann_factor == 8760.0
    rf = (1 + risk_free) ** (1 / 8760) - 1
    a = 1 - 0.95
    assert m["total_return"] == pytest.approx(acc.total(), rel=RTOL)
    assert m["annual_return"] == pytest.approx(acc.annualized(), rel=RTOL)
    assert m["annual_volatility"] == pytest.approx(acc.annualized_volatility(), rel=RTOL)
    assert m["sharpe"] == pytest.approx(acc.sharpe_ratio(risk_free=rf), rel=RTOL)
    assert m["sortino"] == pytest.approx(acc.sortino_ratio(required_return=rf), rel=RTOL)
    assert m["max_drawdown"] == pytest.approx(acc.max_drawdown(), rel=RTOL)
    assert m["calmar"] == pytest.approx(acc.calmar_ratio(), rel=RTOL)
    assert m["var_hist"] == pytest.approx(-acc.value_at_risk(cutoff=a), rel=RTOL)
    assert m["cvar_hist"] == pytest.approx(-acc.cond_value_at_risk(cutoff=a), rel=RTOL)
    assert m["beta"] == pytest.approx(acc.beta(), rel=RTOL)
    assert m["dsr"] == pytest.approx(
        acc.deflated_sharpe_ratio(risk_free=rf, var_sharpe=2e-5 * 8760, nb_trials=20), rel=RTOL
    )


@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.rename is deprecated")  # inside vectorbt
def test_vectorbt_portfolio(vbt):
    """A real vectorbt backtest with fees: its value curve, with the initial cash prepended one bar earlier, gives
    the same returns as ``Portfolio.returns()``; the trade metrics come from its closed trades."""
    rng = np.random.default_rng(42)
    n = 1500
    idx = hourly(n)
    close = pd.Series(20_000 * np.exp(np.cumsum(rng.normal(0, 0.006, n))), idx)
    fast, slow = close.rolling(10).mean(), close.rolling(40).mean()
    entries = (fast > slow) & (fast.shift(1) <= slow.shift(1))
    exits = (fast < slow) & (fast.shift(1) >= slow.shift(1))
    pf = vbt.Portfolio.from_signals(close, entries, exits, init_cash=10_000.0, fees=0.001, freq="1h")
    value = pf.value()
    equity = pd.concat([pd.Series([10_000.0], [idx[0] - pd.Timedelta(hours=1)]), value])
    closed = pf.trades.closed.records_readable
    trades = pd.DataFrame({"pnl": closed["PnL"].to_numpy()})
    position = pf.assets()
    m = compute_metrics(equity, trades, position=position)

    assert np.allclose(
        returns_from_equity(equity).iloc[1:].to_numpy(), pf.returns().to_numpy(), rtol=0, atol=1e-15
    )
    assert m["total_return"] == pytest.approx(pf.total_return(), rel=RTOL)
    assert m["annual_return"] == pytest.approx(pf.annualized_return(), rel=RTOL)
    assert m["annual_volatility"] == pytest.approx(pf.annualized_volatility(), rel=RTOL)
    assert m["sharpe"] == pytest.approx(pf.sharpe_ratio(), rel=RTOL)
    assert m["sortino"] == pytest.approx(pf.sortino_ratio(), rel=RTOL)
    assert m["calmar"] == pytest.approx(pf.calmar_ratio(), rel=RTOL)
    assert m["max_drawdown"] == pytest.approx(pf.max_drawdown(), rel=RTOL)
    assert m["max_drawdown_duration_days"] == pf.drawdowns.max_duration() / pd.Timedelta(days=1)
    assert m["n_trades"] == pf.trades.closed.count() > 5
    assert m["win_rate"] == pytest.approx(pf.trades.closed.win_rate(), rel=RTOL)
    assert m["profit_factor"] == pytest.approx(pf.trades.closed.profit_factor(), rel=RTOL)
    assert m["expectancy"] == pytest.approx(pf.trades.closed.expectancy(), rel=RTOL)
    assert m["exposure"] == pytest.approx(float((position != 0).mean()), rel=RTOL)


def test_psr_and_dsr_keep_their_lower_tail() -> None:
    """A clearly negative Sharpe has a tiny PSR, not 0.0 (the erf form cancels below z ≈ -8.3)."""
    from scipy.stats import norm

    from workbench.backtest.metrics import normal_cdf
    from workbench.viz.report import format_metric

    for z in (-5.0, -9.0, -12.0, -20.0, -30.0, -37.0):
        assert math.isclose(normal_cdf(z), float(norm.cdf(z)), rel_tol=1e-9), z
    sr, n = -0.05, 40_000  # z = sr * sqrt(n - 1) ≈ -10
    got = psr(sr, n, 0.0, 3.0)
    assert got > 0.0
    z = sr * math.sqrt(n - 1) / math.sqrt(1 + 0.5 * sr * sr)
    assert math.isclose(got, float(norm.cdf(z)), rel_tol=1e-9)
    d = deflated_sharpe(sr, n, 0.0, 3.0, n_trials=50, trials_sharpe_var=1e-4)
    assert 0.0 < d < got
    assert format_metric("psr", got) != "0.000" and "e-" in format_metric("psr", got)
    assert format_metric("dsr", 0.0) == "< 1e-300"


def test_historical_var_is_numpys_quantile_to_the_bit() -> None:
    """``var_hist`` comes from the partition the CVaR needs (one pass, not np.quantile's own): on many sizes,
    levels and draws (ties and a constant run included) it is np.quantile's float exactly."""
    from workbench.backtest.metrics import _quantile_linear, _quantile_ranks

    rng = np.random.default_rng(11)
    for n in (3, 4, 5, 7, 10, 19, 20, 21, 100, 101, 1001, 4096):
        for q in (0.01, 0.05, 0.1, 0.25, 0.5, 0.9, 1 / 3):
            for x in (rng.normal(0, 0.01, n), np.round(rng.normal(0, 1, n), 1), np.r_[np.zeros(n - 1), 1.0]):
                lo, hi = _quantile_ranks(n, q)
                s = np.sort(x)
                assert _quantile_linear(s[lo], s[hi], n, q) == float(np.quantile(x, q)), (n, q)
    eq = pd.Series(1000 * np.exp(np.cumsum(rng.normal(0, 0.01, 5000))),
                   pd.date_range("2024-01-01", periods=5000, freq="1h", tz="UTC"))  # fmt: skip
    r = eq.to_numpy()[1:] / eq.to_numpy()[:-1] - 1.0
    for level in (0.9, 0.95, 0.99):
        assert compute_metrics(eq, var_level=level)["var_hist"] == -float(np.quantile(r, 1 - level))
