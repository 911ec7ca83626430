"""Benchmark of the research core's backtests and sweeps, with vectorbt, backtesting.py and a plain numba loop
measured beside workbench in the same run.

Run with ``.venv/bin/python benchmarks/bench_backtest.py`` (``--quick`` for a reduced run); it is not part of
the test suite. What it measures, on synthetic 1h candles (a seeded geometric random walk, UTC index):

1. **One backtest** of ``sma_cross(fast=10, slow=50)``, long-only, fees 0.001, all-in (``size=1``), on 10^5
   and 10^6 bars: ``run_backtest`` warm (the call after an untimed first one), against vectorbt called
   directly on the same signals (tz-naive index; ``Portfolio.from_orders`` with ``targetpercent`` orders, as
   the engine does, and ``Portfolio.from_signals`` with ``size=inf``), backtesting.py
   (``FractionalBacktest(...).run()`` with an equivalent module-level ``Strategy``; 10^6 bars in a child
   process with a time cap) and the plain numba loop below. Equity curves are compared.
2. **Sweeps** on 10^5 bars, 1,000 and 10,000 valid (fast < slow) combinations: ``workbench.backtest.sweep``
   (combinations/s, time, peak RSS delta) against a plain numba loop written here (SMA cross, long-only,
   all-in, next-open fills, ``prange`` over combinations, ``cache=True``; final equity only), the classic
   vectorbt way (``vbt.MA.run`` per combination + ``Portfolio.from_signals`` on all columns at once, on a
   subset because its memory grows with the combinations; extrapolated per combination) and backtesting.py's
   ``optimize`` on a small subset (extrapolated). Final equities are compared on the common combinations.
3. **Cold start**: fresh ``python -c`` processes (after one untimed process has populated the numba caches)
   timed from process spawn to the first finished ``run_backtest`` on the bundled 1h BTCUSDT sample, with
   the time split into interpreter start, imports, data load, ``import vectorbt`` and the backtest itself; the
   same for a first ``sweep``; vectorbt called directly and ``python -c pass`` as references (5 processes
   each: median and min), and one process each without the numba cache (an empty ``NUMBA_CACHE_DIR``, so
   every cached kernel compiles again). One more process runs under ``-X importtime``; the slowest imports
   are listed.

Prints a table and writes every figure plus the machine description to ``benchmarks/results/backtest.json``.
``--profile`` also writes cProfile listings of a warm ``run_backtest``, a first ``run_backtest`` in a fresh
process and a 10,000-combination sweep to ``benchmarks/results/backtest_profile.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import talib
from backtesting import Strategy as BtStrategy
from numba import njit, prange

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE = ROOT / "data" / "sample" / "binance" / "BTCUSDT_1h.csv.gz"
PY = sys.executable
INIT_CASH = 10_000.0
FEES = 0.001
FAST, SLOW = 10, 50
GRID_1K = {"fast": list(range(2, 42)), "slow": list(range(45, 170, 5))}  # 40 x 25, all fast < slow
GRID_10K = {"fast": list(range(2, 102)), "slow": list(range(104, 501, 4))}  # 100 x 100 (slow <= 500)
TARGET_VS_VBT = 50.0  # sweep combinations/s >= 50x vectorbt's
TARGET_VS_PLAIN = 2.0  # sweep time <= 2x the plain numba loop's
TARGET_10K_S = 10.0  # 10^4 combinations x 10^5 bars
TARGET_COLD_S = 3.0  # first run_backtest in a fresh process, cached kernels
REL_TOL = 1e-9


# ------------------------------------------------------------------------------------------ data


def synth(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` gap-free 1h Candles from 2000-01-01 UTC: geometric random walk (sigma 0.5 %/bar, no drift) from
    100, open = previous close, high/low outside both, exponential volume; ``attrs['timeframe'] = '1h'``."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, n)))
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.exponential(10.0, n)
    index = pd.date_range("2000-01-01", periods=n, freq="1h", tz="UTC", name="time")
    df = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
    df.attrs["timeframe"] = "1h"
    return df


def bt_frame(df: pd.DataFrame) -> pd.DataFrame:
    """backtesting.py's input: capitalised columns, tz-naive index."""
    return df.rename(columns=str.capitalize).tz_localize(None)


# ------------------------------------------------------------------------------------------ references


class BtSmaCross(BtStrategy):
    """backtesting.py equivalent of ``sma_cross`` long-only: buy all-in while SMA(fast) > SMA(slow), close the
    position while below, hold when equal. Orders placed in ``next`` fill at the next bar's open."""

    fast = FAST
    slow = SLOW

    def init(self) -> None:
        self.f = self.I(talib.SMA, self.data.Close, self.fast)
        self.s = self.I(talib.SMA, self.data.Close, self.slow)

    def next(self) -> None:
        f, s = self.f[-1], self.s[-1]
        if f > s:
            if not self.position:
                self.buy()
        elif f < s and self.position:
            self.position.close()


def _quiet_backtesting() -> None:
    """No progress bars from backtesting.py (they would also cost time)."""
    import backtesting.backtesting as btm

    btm._tqdm = lambda seq, **_: seq  # type: ignore[attr-defined]
    warnings.filterwarnings("ignore", module="backtesting")
    warnings.filterwarnings("ignore", message=".*fraction", category=UserWarning)


def run_btpy(df: pd.DataFrame, fast: int = FAST, slow: int = SLOW) -> tuple[float, np.ndarray, int]:
    """(seconds, equity curve, closed trades) of one backtesting.py run. ``FractionalBacktest`` trades
    whole 1e-8 units (backtesting.py otherwise buys whole units only); commission on entry and exit like our
    fees."""
    from backtesting.lib import FractionalBacktest

    _quiet_backtesting()
    d = bt_frame(df)
    t0 = time.perf_counter()
    bt = FractionalBacktest(d, BtSmaCross, cash=INIT_CASH, commission=FEES, fractional_unit=1e-8)
    st = bt.run(fast=fast, slow=slow)
    seconds = time.perf_counter() - t0
    return seconds, st["_equity_curve"]["Equity"].to_numpy(dtype=float), int(st["# Trades"])


@njit(cache=True)
def plain_equity_curve(open_, close, f, s, fee, init_cash):  # pragma: no cover - numba
    """One backtest with the minimal loop below, marking equity at every close (single-backtest reference)."""
    n = close.shape[0]
    eq = np.empty(n)
    cash = init_cash
    units = 0.0
    held = False
    for t in range(n):
        if t > 0:
            want = held
            if f[t - 1] > s[t - 1]:
                want = True
            elif f[t - 1] < s[t - 1]:
                want = False
            if want != held:
                p = open_[t]
                if want:
                    units = cash / (p * (1.0 + fee))
                    cash = 0.0
                else:
                    cash = units * p * (1.0 - fee)
                    units = 0.0
                held = want
        eq[t] = cash + units * close[t]
    return eq


def plain_single(df: pd.DataFrame) -> np.ndarray:
    c = df["close"].to_numpy()
    return plain_equity_curve(
        df["open"].to_numpy(), c, talib.SMA(c, FAST), talib.SMA(c, SLOW), FEES, INIT_CASH
    )


@njit(cache=True, parallel=True)
def plain_sma_sweep(open_, close, sma, fast_i, slow_i, fee, init_cash):  # pragma: no cover - numba
    """Minimal SMA-cross simulator: long-only, all-in, decided at the close of t-1, filled at the open of
    t; a buy spends all cash (cash / (open·(1+fee)) units), a sell sells everything less the fee. Returns
    the final equity."""
    nc = fast_i.shape[0]
    n = close.shape[0]
    out = np.empty(nc)
    for c in prange(nc):
        f = sma[fast_i[c]]
        s = sma[slow_i[c]]
        cash = init_cash
        units = 0.0
        held = False
        for t in range(1, n):
            want = held
            if f[t - 1] > s[t - 1]:  # NaN compares False: no change during warm-up
                want = True
            elif f[t - 1] < s[t - 1]:
                want = False
            if want != held:
                p = open_[t]
                if want:
                    units = cash / (p * (1.0 + fee))
                    cash = 0.0
                else:
                    cash = units * p * (1.0 - fee)
                    units = 0.0
                held = want
        out[c] = cash + units * close[n - 1]
    return out


@njit(cache=True, parallel=True)
def plain_sma_sweep_metrics(open_, close, sma, fast_i, slow_i, fee, init_cash):  # pragma: no cover - numba
    """The same loop, also marking equity at every close and accumulating what the sweep's metrics need:
    per-bar return (sum, sum of squares), running peak and max drawdown, bars held, entries. Not a reference
    for the targets (those compare with the minimal loop); it shows what the per-bar metrics cost."""
    nc = fast_i.shape[0]
    n = close.shape[0]
    out = np.empty((nc, 5))
    for c in prange(nc):
        f = sma[fast_i[c]]
        s = sma[slow_i[c]]
        cash = init_cash
        units = 0.0
        held = False
        prev_val = init_cash
        peak = init_cash
        max_dd = 0.0
        s1 = 0.0
        s2 = 0.0
        n_held = 0
        entries = 0
        for t in range(n):
            if t > 0:
                want = held
                if f[t - 1] > s[t - 1]:
                    want = True
                elif f[t - 1] < s[t - 1]:
                    want = False
                if want != held:
                    p = open_[t]
                    if want:
                        units = cash / (p * (1.0 + fee))
                        cash = 0.0
                        entries += 1
                    else:
                        cash = units * p * (1.0 - fee)
                        units = 0.0
                    held = want
            val = cash + units * close[t]
            r = val / prev_val - 1.0
            s1 += r
            s2 += r * r
            prev_val = val
            if val > peak:
                peak = val
            dd = val / peak - 1.0
            if dd < max_dd:
                max_dd = dd
            if held:
                n_held += 1
        mean = s1 / n
        out[c, 0] = prev_val
        out[c, 1] = mean / np.sqrt((s2 - n * mean * mean) / (n - 1))
        out[c, 2] = max_dd
        out[c, 3] = n_held / n
        out[c, 4] = entries
    return out


def plain_sweep(df: pd.DataFrame, combos: list[tuple[int, int]], metrics: bool = False) -> np.ndarray:
    """Final equity per (fast, slow), SMAs computed once per distinct period with TA-Lib (as the sweep does);
    with ``metrics``, rows of (final equity, per-bar Sharpe, max drawdown, exposure, entries)."""
    o = df["open"].to_numpy()
    c = df["close"].to_numpy()
    uniq = sorted({w for fs in combos for w in fs})
    at = {w: i for i, w in enumerate(uniq)}
    table = np.vstack([talib.SMA(c, w) for w in uniq])
    fi = np.array([at[f] for f, _ in combos], dtype=np.int64)
    si = np.array([at[s] for _, s in combos], dtype=np.int64)
    kernel = plain_sma_sweep_metrics if metrics else plain_sma_sweep
    return kernel(o, c, table, fi, si, FEES, INIT_CASH)


def long_state(f: np.ndarray, s: np.ndarray) -> np.ndarray:
    """1 while f > s, 0 while f < s, the previous state when equal or undefined (0 before the first)."""
    st = pd.Series(np.where(f > s, 1.0, np.where(f < s, 0.0, np.nan))).ffill().fillna(0.0)
    return st.to_numpy()


def vbt_single(vbt: Any, df: pd.DataFrame, how: str) -> tuple[float, pd.Series]:
    """vectorbt directly: signals from TA-Lib SMAs, portfolio, equity curve; timed from the SMAs on."""
    close = pd.Series(df["close"].to_numpy(), index=df.index.tz_localize(None), name="close")
    o = df["open"].to_numpy()
    t0 = time.perf_counter()
    c = close.to_numpy()
    f, s = talib.SMA(c, FAST), talib.SMA(c, SLOW)
    if how == "orders":  # the engine's way: a target-percent order where the (shifted) target changes
        eff = np.r_[0.0, long_state(f, s)[:-1]]
        prev = np.r_[0.0, eff[:-1]]
        size = np.where(eff != prev, eff, np.nan)
        pf = vbt.Portfolio.from_orders(
            close, size=size, size_type="targetpercent", price=o, fees=FEES, init_cash=INIT_CASH, freq="1h"
        )
    else:
        entries = np.r_[False, (f > s)[:-1]]
        exits = np.r_[False, (f < s)[:-1]]
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, price=o, size=np.inf, fees=FEES, init_cash=INIT_CASH, freq="1h"
        )
    value = pf.value()
    return time.perf_counter() - t0, value


def vbt_sweep(
    vbt: Any, df: pd.DataFrame, combos: list[tuple[int, int]]
) -> tuple[dict[str, float], pd.Series]:
    """The classic vectorbt sweep: one MA column per combination, state signals (above = entry, below = exit,
    shifted one bar so they fill at the next open), one ``from_signals`` over all columns, then final value,
    Sharpe and max drawdown of every column. Returns the stage times and the final values by (fast, slow)."""
    close = pd.Series(df["close"].to_numpy(), index=df.index.tz_localize(None), name="close")
    o = df["open"].to_numpy()[:, None]
    fw = [f for f, _ in combos]
    sw = [s for _, s in combos]
    t0 = time.perf_counter()
    fm = vbt.MA.run(close, fw, short_name="fast")
    sm = vbt.MA.run(close, sw, short_name="slow")
    t1 = time.perf_counter()
    entries = fm.ma_above(sm).vbt.fshift(1, fill_value=False)
    exits = fm.ma_below(sm).vbt.fshift(1, fill_value=False)
    t2 = time.perf_counter()
    pf = vbt.Portfolio.from_signals(
        close, entries, exits, price=o, size=np.inf, fees=FEES, init_cash=INIT_CASH, freq="1h"
    )
    t3 = time.perf_counter()
    final = pf.final_value()
    pf.sharpe_ratio()
    pf.max_drawdown()
    t4 = time.perf_counter()
    final.index = pd.MultiIndex.from_tuples(
        [(int(a), int(b)) for a, b in final.index], names=["fast", "slow"]
    )
    times = {
        "ma_s": t1 - t0,
        "signals_s": t2 - t1,
        "portfolio_s": t3 - t2,
        "metrics_s": t4 - t3,
        "total_s": t4 - t0,
    }
    return times, final


# ------------------------------------------------------------------------------------------ measuring


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident memory above the level at entry, in MiB. Resets the kernel's high-water mark through
    ``/proc/self/clear_refs`` (Linux); where that is refused, samples VmRSS every 2 ms in a thread."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.base = _status_kib("VmRSS") or 0
        self._sampler: threading.Thread | None = None
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "VmRSS sampled every 2 ms"
            self._stop = threading.Event()
            self._peak = self.base

            def sample() -> None:
                while not self._stop.wait(0.002):
                    self._peak = max(self._peak, _status_kib("VmRSS") or 0)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            peak = self._peak
        else:
            peak = _status_kib("VmHWM") or 0
        self.delta_mib = max(peak - self.base, 0) / 1024


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def rel_diff(a: float | np.ndarray, b: float | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))) if a.size else float("nan")


def combos_of(grid: dict[str, list[int]]) -> list[tuple[int, int]]:
    return [(f, s) for f in grid["fast"] for s in grid["slow"] if f < s]


def machine() -> dict[str, Any]:
    import backtesting
    import numba
    import vectorbt

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = (_status_kib_file("/proc/meminfo", "MemTotal") or 0) * 1024
    try:
        from importlib.metadata import version

        rust = version("vectorbt-rust")
    except Exception:
        rust = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total_gib": round(mem / 2**30, 1) if mem else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "vectorbt": vectorbt.__version__,
        "vectorbt_rust": rust,
        "vectorbt_engine": vectorbt.settings["engine"],
        "backtesting": backtesting.__version__,
        "talib": talib.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def _status_kib_file(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _profile_text(prof: cProfile.Profile, title: str, n: int = 30) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(n)
    return f"==== {title}\n{s.getvalue()}"


# ------------------------------------------------------------------------------------------ 1: one backtest


def agreement(wb: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Final equity difference, and the largest difference over the bars where workbench's equity is >= 1
    (1e-4 of the initial cash). Below that, vectorbt's absolute tolerance (1e-12 on cash and size) outweighs
    its relative one (1e-9) and the engines round differently, so tiny equities are not comparable."""
    big = wb >= 1.0
    last = int(np.nonzero(big)[0][-1]) + 1 if big.any() else 0
    return {
        "final_equity": float(other[-1]),
        "rel_diff_final": rel_diff(wb[-1], other[-1]),
        "max_rel_diff_where_equity_ge_1": rel_diff(wb[big], other[big]),
        "bars_with_equity_ge_1": int(big.sum()),
        "last_bar_with_equity_ge_1": last,
    }


def bench_single(args: argparse.Namespace, prof_text: list[str]) -> list[dict[str, Any]]:
    import vectorbt as vbt

    from workbench.backtest.engine import BacktestConfig, run_backtest
    from workbench.strategies.momentum import SmaCross

    cfg = BacktestConfig(fees=FEES, direction="long", init_cash=INIT_CASH)
    out = []
    for n in args.sizes:
        df = synth(n)
        row: dict[str, Any] = {"bars": n}
        t_first, r = timed(lambda df=df: run_backtest(df, SmaCross(fast=FAST, slow=SLOW), cfg))
        reps = 3 if n <= 200_000 else 1
        times = []
        for _ in range(reps):
            gc.collect()
            dt_, r = timed(lambda df=df: run_backtest(df, SmaCross(fast=FAST, slow=SLOW), cfg))
            times.append(dt_)
        if args.profile and n == args.sizes[-1]:
            prof = cProfile.Profile()
            prof.enable()
            run_backtest(df, SmaCross(fast=FAST, slow=SLOW), cfg)
            prof.disable()
            prof_text.append(_profile_text(prof, f"warm run_backtest, {n:,} bars"))
        wb_eq = r.equity.to_numpy()
        row["workbench"] = {
            "first_call_in_process_s": t_first,
            "warm_s": times[0],
            "warm_all_s": times,
            "final_equity": float(wb_eq[-1]),
            "trades": len(r.trades),
        }
        c_ = df["close"].to_numpy()
        row["long_on_first_defined_bar"] = bool(talib.SMA(c_, FAST)[SLOW - 1] > talib.SMA(c_, SLOW)[SLOW - 1])
        vt = {}
        for how in ("orders", "signals"):
            vbt_single(vbt, df, how)  # warm-up
            ts_ = []
            for _ in range(reps):
                dt_, val = vbt_single(vbt, df, how)
                ts_.append(dt_)
            vt[how] = {"s": min(ts_), "all_s": ts_, **agreement(wb_eq, val.to_numpy())}
        row["vectorbt_from_orders"] = vt["orders"]
        row["vectorbt_from_signals"] = vt["signals"]
        plain_single(df)  # compile or load from the cache
        t_pl, curve = timed(lambda df=df: plain_single(df))
        row["plain_numba"] = {"s": t_pl, **agreement(wb_eq, curve)}
        if n <= args.btpy_inline_max:
            run_btpy(synth(2_000))  # warm-up
            s_, curve, ntr = run_btpy(df)
            row["backtesting_py"] = {"s": s_, "closed_trades": ntr, **agreement(wb_eq, curve)}
        elif args.btpy_cap > 0:
            row["backtesting_py"] = _btpy_child(n, args.btpy_cap, wb_eq)
        else:
            row["backtesting_py"] = {"skipped": "--btpy-cap 0"}
        out.append(row)
        bp = row["backtesting_py"]
        print(
            f"single {n:>9,} bars: workbench {times[0]:.3f} s | vbt from_orders {vt['orders']['s']:.3f} s | "
            f"from_signals {vt['signals']['s']:.3f} s | plain numba {t_pl:.4f} s | backtesting.py "
            + (f"{bp['s']:.2f} s" if "s" in bp else str(bp.get("skipped") or bp.get("timeout") or "error")),
            flush=True,
        )
        del df, r
        gc.collect()
    return out


def _btpy_child(n: int, cap: float, wb_eq: np.ndarray) -> dict[str, Any]:
    """backtesting.py on ``n`` bars in a child process, killed after ``cap`` seconds."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wb-bench-bt-") as tmp:
        path = Path(tmp) / "equity.npy"
        try:
            p = subprocess.run(
                [PY, __file__, "--btpy-child", str(n), "--btpy-out", str(path)],
                capture_output=True,
                text=True,
                timeout=cap,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            return {"timeout": f"not finished within the {cap:.0f} s cap (child killed)", "cap_s": cap}
        if p.returncode != 0:
            return {"error": p.stderr[-2000:]}
        res = json.loads(p.stdout.strip().splitlines()[-1])
        res.update(agreement(wb_eq, np.load(path)))
    res["child_wall_s"] = time.perf_counter() - t0
    res["note"] = "run in a child process (data generated there; the time is that of Backtest.run only)"
    return res


def btpy_child(n: int, out: str) -> None:
    run_btpy(synth(2_000))
    s_, curve, ntr = run_btpy(synth(n))
    np.save(out, curve)
    print(json.dumps({"s": s_, "closed_trades": ntr}))


# ------------------------------------------------------------------------------------------ 2: sweeps


def bench_sweeps(args: argparse.Namespace, prof_text: list[str]) -> dict[str, Any]:
    from workbench.backtest.engine import BacktestConfig
    from workbench.backtest.sweep import sweep

    cfg = BacktestConfig(fees=FEES, direction="long", init_cash=INIT_CASH)
    n = args.sweep_bars
    df = synth(n, seed=11)
    res: dict[str, Any] = {"bars": n, "grids": {}}
    c1k, c10k = combos_of(GRID_1K), combos_of(GRID_10K)

    # backtesting.py first: its optimize() forks worker processes, done before numba starts its thread pool
    sub_bt = [c1k[i] for i in np.linspace(0, len(c1k) - 1, args.btpy_combos).astype(int)]
    from backtesting.lib import FractionalBacktest

    _quiet_backtesting()
    d = bt_frame(df)
    bt = FractionalBacktest(d, BtSmaCross, cash=INIT_CASH, commission=FEES, fractional_unit=1e-8)
    pairs = set(sub_bt)
    fasts = sorted({f for f, _ in sub_bt})
    slows = sorted({s for _, s in sub_bt})
    t0 = time.perf_counter()
    _, heat = bt.optimize(
        fast=fasts,
        slow=slows,
        constraint=lambda p: (p.fast, p.slow) in pairs,
        maximize="Equity Final [$]",
        return_heatmap=True,
    )
    t_bt = time.perf_counter() - t0
    heat.index = pd.MultiIndex.from_tuples([(int(a), int(b)) for a, b in heat.index], names=["fast", "slow"])
    res["backtesting_py_optimize"] = {
        "combos": len(heat),
        "s": t_bt,
        "combos_per_s": len(heat) / t_bt,
        "extrapolated_1k_s": 1000 * t_bt / len(heat),
        "processes": os.cpu_count(),
        "note": "FractionalBacktest.optimize over an explicit subset of the 1k grid (constraint), all cores",
    }
    print(f"backtesting.py optimize: {len(heat)} combos in {t_bt:.1f} s", flush=True)

    # workbench sweep: first call in this process (loads the cached kernel), then warm
    t_first, _ = timed(lambda: sweep(df, "sma_cross", {"fast": [5, 10], "slow": [50, 60]}, cfg))
    res["workbench_first_small_sweep_s"] = t_first
    plain_sweep(df, [(5, 50)])
    plain_sweep(df, [(5, 50)], metrics=True)
    tables = {}
    for name, grid, combos, reps in (("1k", GRID_1K, c1k, 3), ("10k", GRID_10K, c10k, 2)):
        g: dict[str, Any] = {"grid": {k: [v[0], v[-1], len(v)] for k, v in grid.items()}}
        wb_t = []
        for i in range(reps):
            with PeakRSS() as mem:
                dt_, r = timed(lambda grid=grid: sweep(df, "sma_cross", grid, cfg))
            wb_t.append(dt_)
            if i == 0:
                wb_mem = mem.delta_mib
        if args.profile and name == "10k":
            prof = cProfile.Profile()
            prof.enable()
            sweep(df, "sma_cross", grid, cfg)
            prof.disable()
            prof_text.append(_profile_text(prof, f"sweep, {len(combos):,} combinations x {n:,} bars"))
        t_wb = statistics.median(wb_t)
        g["workbench"] = {
            "n_combinations": r.n_combinations,
            "n_valid": r.n_valid,
            "s": t_wb,
            "all_s": wb_t,
            "in_kernel_path_s": r.seconds,
            "combos_per_s": r.n_valid / t_wb,
            "peak_rss_delta_mib": wb_mem,
            "rss_method": mem.method,
            "engine": r.engine,
        }
        tab = r.table.set_index(["fast", "slow"])["final_equity"]
        tables[name] = tab
        pl_t = []
        for i in range(reps):
            with PeakRSS() as mem:
                dt_, pe = timed(lambda combos=combos: plain_sweep(df, combos))
            pl_t.append(dt_)
            if i == 0:
                pl_mem = mem.delta_mib
        t_pl = statistics.median(pl_t)
        wb_vals = tab.loc[combos].to_numpy()
        pm_t = [timed(lambda combos=combos: plain_sweep(df, combos, metrics=True)) for _ in range(reps)]
        t_pm = statistics.median(x[0] for x in pm_t)
        pm = pm_t[0][1]
        g["plain_numba"] = {
            "s": t_pl,
            "all_s": pl_t,
            "combos_per_s": len(combos) / t_pl,
            "peak_rss_delta_mib": pl_mem,
            "max_rel_diff_final_vs_workbench": rel_diff(wb_vals, pe),
            "ratio_workbench_to_plain": t_wb / t_pl,
        }
        g["plain_numba_with_metrics"] = {
            "s": t_pm,
            "combos_per_s": len(combos) / t_pm,
            "max_rel_diff_final_vs_workbench": rel_diff(wb_vals, pm[:, 0]),
            "ratio_workbench_to_it": t_wb / t_pm,
        }
        res["grids"][name] = g
        print(
            f"sweep {name}: workbench {r.n_valid:,} combos {t_wb:.2f} s ({r.n_valid / t_wb:,.0f}/s, "
            f"+{wb_mem:.0f} MiB) | plain numba {t_pl:.2f} s ({len(combos) / t_pl:,.0f}/s), with metrics "
            f"{t_pm:.2f} s | "
            f"max rel diff {g['plain_numba']['max_rel_diff_final_vs_workbench']:.1e}",
            flush=True,
        )

    # backtesting.py equity check against the workbench 1k table
    # backtesting.py calls next() from the bar AFTER the first one with every indicator defined, so where
    # fast > slow already on that bar (long at once under our convention) it enters one bar later.
    wb_bt = tables["1k"].loc[list(heat.index)].to_numpy()
    cl = df["close"].to_numpy()
    long_first = np.array([talib.SMA(cl, f)[s - 1] > talib.SMA(cl, s)[s - 1] for f, s in heat.index])
    d_bt = np.abs(heat.to_numpy() / wb_bt - 1.0)
    res["backtesting_py_optimize"].update(
        {
            "max_rel_diff_final_vs_workbench": float(d_bt.max()),
            "combos_long_on_first_defined_bar": int(long_first.sum()),
            "max_rel_diff_where_flat_on_first_defined_bar": float(d_bt[~long_first].max())
            if (~long_first).any()
            else None,
            "per_combo": [
                {"fast": f, "slow": s, "rel_diff": float(x), "long_on_first_defined_bar": bool(lf)}
                for (f, s), x, lf in zip(heat.index, d_bt, long_first, strict=True)
            ],
        }
    )

    # vectorbt: subset of the 1k grid, evenly spread
    import vectorbt as vbt

    sub = [c1k[i] for i in np.linspace(0, len(c1k) - 1, args.vbt_combos).astype(int)]
    vbt_sweep(vbt, df.iloc[:5_000], sub[:3])  # compile / warm up on a small slice
    gc.collect()
    with PeakRSS() as mem:
        vt, final = vbt_sweep(vbt, df, sub)
    k = len(sub)
    wb_sub = tables["1k"].loc[list(final.index)].to_numpy()
    diff = np.abs(wb_sub - final.to_numpy()) / np.abs(final.to_numpy())
    res["vectorbt"] = {
        "combos": k,
        **vt,
        "combos_per_s": k / vt["total_s"],
        "extrapolated_1k_s": 1000 * vt["total_s"] / k,
        "extrapolated_10k_s": 10_000 * vt["total_s"] / k,
        "peak_rss_delta_mib": mem.delta_mib,
        "peak_rss_per_combo_mib": mem.delta_mib / k,
        "extrapolated_1k_peak_rss_gib": mem.delta_mib / k * 1000 / 1024,
        "max_rel_diff_final_vs_workbench": float(diff.max()),
        "n_over_tolerance": int((diff > REL_TOL).sum()),
        "method": "vbt.MA.run per combination + ma_above/ma_below shifted 1 bar + Portfolio.from_signals "
        "(price=open, size=inf) + final_value, sharpe_ratio, max_drawdown",
    }
    print(
        f"vectorbt: {k} combos {vt['total_s']:.1f} s ({k / vt['total_s']:.1f}/s, +{mem.delta_mib:,.0f} MiB); "
        f"max rel diff vs workbench {diff.max():.1e} ({int((diff > REL_TOL).sum())} over {REL_TOL:g})",
        flush=True,
    )
    vbt_rate = k / vt["total_s"]
    for g in res["grids"].values():
        g["ratio_combos_per_s_vs_vectorbt"] = g["workbench"]["combos_per_s"] / vbt_rate
        g["ratio_combos_per_s_vs_backtesting_py"] = (
            g["workbench"]["combos_per_s"] / res["backtesting_py_optimize"]["combos_per_s"]
        )
    return res


# ------------------------------------------------------------------------------------------ 3: cold start

_COLD_BT = """
import time, json, sys
t0 = time.time()
import pandas as pd
from workbench.types import candles_from_frame
from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.strategies.momentum import SmaCross
t1 = time.time()
df = candles_from_frame(pd.read_csv(sys.argv[1]), timeframe='1h', source='x')
t2 = time.time()
import vectorbt
t3 = time.time()
r = run_backtest(df, SmaCross(fast=10, slow=50), BacktestConfig(fees=0.001, direction='long'))
t4 = time.time()
run_backtest(df, SmaCross(fast=10, slow=50), BacktestConfig(fees=0.001, direction='long'))
t5 = time.time()
print(json.dumps({'t0': t0, 'imports': t1 - t0, 'data': t2 - t1, 'import_vectorbt': t3 - t2,
  'backtest': t4 - t3, 'done': t4, 'second_backtest': t5 - t4, 'final_equity': float(r.equity.iloc[-1]),
  'bars': len(df)}))
"""

_COLD_SWEEP = """
import time, json, sys
t0 = time.time()
import pandas as pd
from workbench.types import candles_from_frame
from workbench.backtest.engine import BacktestConfig
from workbench.backtest.sweep import sweep
t1 = time.time()
df = candles_from_frame(pd.read_csv(sys.argv[1]), timeframe='1h', source='x')
t2 = time.time()
r = sweep(df, 'sma_cross', {'fast': list(range(5, 25)), 'slow': list(range(30, 130, 10))},
          BacktestConfig(fees=0.001, direction='long'))
t3 = time.time()
print(json.dumps({'t0': t0, 'imports': t1 - t0, 'data': t2 - t1, 'backtest': t3 - t2, 'done': t3,
  'n_valid': r.n_valid}))
"""

_COLD_VBT = """
import time, json, sys
t0 = time.time()
import numpy as np, pandas as pd, talib
t1 = time.time()
raw = pd.read_csv(sys.argv[1])
close = pd.Series(raw['close'].to_numpy(), index=pd.to_datetime(raw['timestamp'], unit='ms'))
t2 = time.time()
import vectorbt as vbt
t3 = time.time()
c = close.to_numpy()
f, s = talib.SMA(c, 10), talib.SMA(c, 50)
pf = vbt.Portfolio.from_signals(close, np.r_[False, (f > s)[:-1]], np.r_[False, (f < s)[:-1]],
  price=raw['open'].to_numpy(), size=np.inf, fees=0.001, init_cash=10000.0, freq='1h')
v = pf.value()
t4 = time.time()
print(json.dumps({'t0': t0, 'imports': t1 - t0, 'data': t2 - t1, 'import_vectorbt': t3 - t2,
  'backtest': t4 - t3, 'done': t4, 'final_equity': float(v.iloc[-1])}))
"""

_COLD_PASS = "import time, json; print(json.dumps({'t0': time.time(), 'done': time.time()}))"


def _cold_once(code: str, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**os.environ, **(env_extra or {})}
    t_spawn = time.time()
    p = subprocess.run(
        [PY, "-c", code, str(SAMPLE)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    t_exit = time.time()
    if p.returncode != 0:
        raise RuntimeError(f"cold-start child failed:\n{p.stderr[-3000:]}")
    d = json.loads(p.stdout.strip().splitlines()[-1])
    d["startup"] = d.pop("t0") - t_spawn
    d["to_first_result"] = d.pop("done") - t_spawn
    d["process_exit"] = t_exit - t_spawn - d["to_first_result"]
    return d


def bench_cold(args: argparse.Namespace, prof_text: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"sample": str(SAMPLE.relative_to(ROOT)), "runs": args.cold_runs}
    for name, code in (
        ("python_pass", _COLD_PASS),
        ("run_backtest", _COLD_BT),
        ("sweep", _COLD_SWEEP),
        ("vectorbt_direct", _COLD_VBT),
    ):
        _cold_once(code)  # populates numba / vectorbt caches; not measured
        runs = [_cold_once(code) for _ in range(args.cold_runs)]
        keys = [k for k in runs[0] if isinstance(runs[0][k], float) and k != "final_equity"]
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        out[name] = {
            "median": med,
            "min_to_first_result": min(r["to_first_result"] for r in runs),
            "runs": runs,
        }
        extra = {k: v for k, v in runs[0].items() if k not in keys}
        out[name].update(extra)
        print(
            f"cold {name}: {med['to_first_result']:.2f} s to the first result (min "
            f"{out[name]['min_to_first_result']:.2f}; medians: "
            + ", ".join(f"{k} {v:.2f}" for k, v in med.items() if k != "to_first_result")
            + ")",
            flush=True,
        )
    # the same without any numba cache (an empty NUMBA_CACHE_DIR): every cached kernel compiles again
    with tempfile.TemporaryDirectory(prefix="wb-bench-numba-") as tmp:
        for name, code in (("run_backtest_no_cache", _COLD_BT), ("sweep_no_cache", _COLD_SWEEP)):
            d = _cold_once(code, {"NUMBA_CACHE_DIR": str(Path(tmp) / name)})
            out[name] = {"median": {k: v for k, v in d.items() if k != "final_equity"}, "runs": [d]}
            print(f"cold {name}: {d['to_first_result']:.2f} s to the first result", flush=True)
    out["importtime_top"] = _importtime()
    if args.profile:
        code = (
            "import cProfile, pstats, io, sys\n"
            "pr = cProfile.Profile(); pr.enable()\n"
            + _COLD_BT
            + "\npr.disable(); s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats('cumulative')"
            ".print_stats(40); sys.stderr.write(s.getvalue())\n"
        )
        p = subprocess.run(
            [PY, "-c", code, str(SAMPLE)], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        prof_text.append("==== fresh process: imports + first run_backtest (1h sample)\n" + p.stderr)
    return out


def _importtime(top: int = 15) -> list[dict[str, Any]]:
    """The slowest imports (cumulative, microseconds) of the cold run_backtest child, by ``-X importtime``."""
    p = subprocess.run(
        [PY, "-X", "importtime", "-c", _COLD_BT, str(SAMPLE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:") :].split("|")
        self_us, cum_us, name = int(parts[0]), int(parts[1]), parts[2]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append(
            {
                "module": name.strip(),
                "depth": depth,
                "self_ms": self_us / 1000,
                "cumulative_ms": cum_us / 1000,
            }
        )
    shallow = [r for r in rows if r["depth"] <= 1]
    return sorted(shallow, key=lambda r: -r["cumulative_ms"])[:top]


# ------------------------------------------------------------------------------------------ report


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    sw = res.get("sweeps")
    if sw:
        for name, g in sw["grids"].items():
            r = g["ratio_combos_per_s_vs_vectorbt"]
            out.append(
                {
                    "target": f"sweep {name}: >= {TARGET_VS_VBT:g}x vectorbt combinations/s",
                    "value": round(r, 1),
                    "met": r >= TARGET_VS_VBT,
                }
            )
            q = g["plain_numba"]["ratio_workbench_to_plain"]
            out.append(
                {
                    "target": f"sweep {name}: within {TARGET_VS_PLAIN:g}x of the plain numba loop (time)",
                    "value": round(q, 2),
                    "met": q <= TARGET_VS_PLAIN,
                }
            )
        t10 = sw["grids"]["10k"]["workbench"]["s"]
        out.append(
            {
                "target": f"10^4 combos x {sw['bars']:,} bars < {TARGET_10K_S:g} s",
                "value": round(t10, 2),
                "met": t10 < TARGET_10K_S and sw["bars"] >= 100_000,
            }
        )
    cold = res.get("cold_start")
    if cold:
        t = cold["run_backtest"]["median"]["to_first_result"]
        out.append(
            {
                "target": f"first run_backtest in a fresh process < {TARGET_COLD_S:g} s",
                "value": round(t, 2),
                "met": t < TARGET_COLD_S,
            }
        )
    return out


def print_report(res: dict[str, Any]) -> None:
    if res.get("single"):
        print()
        print(
            "== one backtest: sma_cross(10, 50), long-only, fees 0.001, all-in; warm; seconds (workbench/ref)"
        )
        print(
            f"{'bars':>10} | {'workbench':>9} | {'vbt from_orders':>17} | {'vbt from_signals':>17} | "
            f"{'plain numba':>16} | {'backtesting.py':>18}"
        )
        for r in res.get("single", []):
            wb = r["workbench"]["warm_s"]

            def cell(x: dict[str, Any], w: int, wb: float = wb) -> str:
                if "s" not in x:
                    return f"{'n/a':>{w}}"
                return f"{x['s']:>7.4f} ({wb / x['s']:>5.0f}x)".rjust(w)

            print(
                f"{r['bars']:>10,} | {wb:>9.3f} | {cell(r['vectorbt_from_orders'], 17)} | "
                f"{cell(r['vectorbt_from_signals'], 17)} | {cell(r['plain_numba'], 16)} | "
                f"{cell(r['backtesting_py'], 18)}"
            )
        print(
            "   final equity; relative difference to workbench at the end / max over bars with equity >= 1:"
        )
        for r in res.get("single", []):
            parts = []
            for key, label in (
                ("vectorbt_from_orders", "vbt from_orders"),
                ("vectorbt_from_signals", "vbt from_signals"),
                ("plain_numba", "plain numba"),
                ("backtesting_py", "backtesting.py"),
            ):
                x = r[key]
                if "rel_diff_final" in x:
                    parts.append(
                        f"{label} {x['rel_diff_final']:.1e} / {x['max_rel_diff_where_equity_ge_1']:.1e}"
                    )
                else:
                    parts.append(f"{label} n/a")
            ge1 = r["plain_numba"]["bars_with_equity_ge_1"]
            print(
                f"   {r['bars']:>10,}: workbench {r['workbench']['final_equity']:.10g} ({ge1:,} bars >= 1); "
                + ", ".join(parts)
            )
    sw = res.get("sweeps")
    if sw:
        print()
        print(f"== sweeps of sma_cross on {sw['bars']:,} bars (long-only, fees 0.001)")
        print(
            f"{'grid':>5} | {'combos':>7} | {'workbench s':>11} | {'combos/s':>9} | {'peak RSS +MiB':>13} | "
            f"{'plain numba s':>13} | {'wb/plain':>8} | {'plain+metrics s':>15} | {'wb/(plain+m)':>12} | "
            f"{'wb/vbt (combos/s)':>17}"
        )
        for name, g in sw["grids"].items():
            w, p, pm = g["workbench"], g["plain_numba"], g["plain_numba_with_metrics"]
            print(
                f"{name:>5} | {w['n_valid']:>7,} | {w['s']:>11.3f} | {w['combos_per_s']:>9,.0f} | "
                f"{w['peak_rss_delta_mib']:>13.0f} | {p['s']:>13.3f} | "
                f"{p['ratio_workbench_to_plain']:>8.2f} | "
                f"{pm['s']:>15.3f} | {pm['ratio_workbench_to_it']:>12.2f} | "
                f"{g['ratio_combos_per_s_vs_vectorbt']:>17.0f}"
            )
        for name, g in sw["grids"].items():
            print(
                f"   {name}: max rel diff of final equity, plain numba vs workbench "
                f"{g['plain_numba']['max_rel_diff_final_vs_workbench']:.1e}"
            )
        v = sw["vectorbt"]
        print(
            f"   vectorbt: {v['combos']} combos in {v['total_s']:.2f} s = {v['combos_per_s']:.1f} combos/s "
            f"(MA {v['ma_s']:.2f}, signals {v['signals_s']:.2f}, portfolio {v['portfolio_s']:.2f}, metrics "
            f"{v['metrics_s']:.2f}); peak RSS +{v['peak_rss_delta_mib']:,.0f} MiB "
            f"({v['peak_rss_per_combo_mib']:.1f} MiB/combo, ~{v['extrapolated_1k_peak_rss_gib']:.1f} GiB "
            "for 1k); "
            f"extrapolated: 1k {v['extrapolated_1k_s']:.0f} s, 10k {v['extrapolated_10k_s']:.0f} s"
        )
        print(
            "   vectorbt vs workbench final equity: max rel diff "
            f"{v['max_rel_diff_final_vs_workbench']:.1e}, "
            f"{v['n_over_tolerance']} of {v['combos']} over {REL_TOL:g}"
        )
        b = sw["backtesting_py_optimize"]
        flat = b["max_rel_diff_where_flat_on_first_defined_bar"]
        print(
            f"   backtesting.py optimize: {b['combos']} combos in {b['s']:.2f} s = {b['combos_per_s']:.2f} "
            f"combos/s (1k extrapolated {b['extrapolated_1k_s']:.0f} s); final equity vs workbench: max rel "
            "diff "
            f"{b['max_rel_diff_final_vs_workbench']:.1e}; {b['combos_long_on_first_defined_bar']} of "
            f"{b['combos']} combos are long on the first bar with both SMAs (backtesting.py enters a bar "
            f"later there); over the others {'n/a' if flat is None else f'{flat:.1e}'}"
        )
    cold = res.get("cold_start")
    if cold:
        print()
        print(
            f"== cold start (fresh processes; median and min of {cold['runs']}, 1 without the numba cache); "
            "seconds from spawn"
        )
        for name in (
            "python_pass",
            "run_backtest",
            "sweep",
            "vectorbt_direct",
            "run_backtest_no_cache",
            "sweep_no_cache",
        ):
            m = cold[name]["median"]
            parts = ", ".join(
                f"{k} {v:.2f}" for k, v in m.items() if k != "to_first_result" and isinstance(v, float)
            )
            lo = cold[name].get("min_to_first_result", m["to_first_result"])
            print(f"   {name:>21}: {m['to_first_result']:.2f} s, min {lo:.2f}  ({parts})")
        print(
            "   slowest imports (cumulative ms): "
            + ", ".join(f"{r['module']} {r['cumulative_ms']:.0f}" for r in cold["importtime_top"][:8])
        )
    print(f"   load average (1, 5, 15 min): {res['machine'].get('loadavg_1_5_15')}")
    print()
    print("== targets")
    for t in res.get("targets", []):
        print(f"   {'MET ' if t['met'] else 'MISS'}  {t['target']}: {t['value']}")


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="reduced run: 10^5 bars only, small reference subsets"
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="bars for the single backtest")
    ap.add_argument("--sweep-bars", type=int, default=100_000, help="bars for the sweeps (default 100,000)")
    ap.add_argument(
        "--vbt-combos", type=int, default=None, help="vectorbt subset size (default 500; quick 50)"
    )
    ap.add_argument(
        "--btpy-combos", type=int, default=None, help="backtesting.py optimize subset (default 20)"
    )
    ap.add_argument(
        "--btpy-cap", type=float, default=150.0, help="time cap, s, for backtesting.py above 2e5 bars"
    )
    ap.add_argument(
        "--cold-runs", type=int, default=None, help="fresh processes per cold-start case (default 5)"
    )
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["single", "sweeps", "cold"], help="sections to skip"
    )
    ap.add_argument("--out", default=str(RESULTS / "backtest.json"), help="JSON output path")
    ap.add_argument("--profile", action="store_true", help="also write cProfile listings to results/")
    ap.add_argument("--btpy-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--btpy-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.btpy_child:
        btpy_child(args.btpy_child, args.btpy_out)
        return 0
    args.sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    args.vbt_combos = args.vbt_combos or (50 if args.quick else 500)
    args.btpy_combos = args.btpy_combos or (6 if args.quick else 20)
    args.cold_runs = args.cold_runs or (1 if args.quick else 5)
    args.btpy_inline_max = 200_000
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "benchmark": "backtest",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(PY).name, *sys.argv]),
        "settings": {
            "strategy": f"sma_cross(fast={FAST}, slow={SLOW})",
            "direction": "long",
            "fees": FEES,
            "init_cash": INIT_CASH,
            "size": "1.0 (all-in)",
            "data": "synthetic 1h geometric random walk, sigma 0.5 %/bar, no drift, UTC index",
            "quick": args.quick,
            "sizes": args.sizes,
            "sweep_bars": args.sweep_bars,
            "vbt_combos": args.vbt_combos,
            "btpy_combos": args.btpy_combos,
            "cold_runs": args.cold_runs,
            "profiled": args.profile,
        },
        "machine": machine(),
    }
    prof_text: list[str] = []
    load = {"start": os.getloadavg()}  # other work on the machine skews the parallel sweeps most
    if "single" not in args.skip:
        res["single"] = bench_single(args, prof_text)
        load["after_single"] = os.getloadavg()
    if "sweeps" not in args.skip:
        res["sweeps"] = bench_sweeps(args, prof_text)
        load["after_sweeps"] = os.getloadavg()
        import numba

        res["machine"]["numba_threading_layer"] = numba.threading_layer()
    if "cold" not in args.skip:
        res["cold_start"] = bench_cold(args, prof_text)
        load["after_cold"] = os.getloadavg()
    res["machine"]["loadavg_1_5_15"] = load
    res["targets"] = targets(res)
    res["total_s"] = time.perf_counter() - t_start
    print_report(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({res['total_s']:.0f} s)")
    if prof_text:
        pf = out.parent / "backtest_profile.txt"
        pf.write_text("\n\n".join(prof_text))
        print(f"wrote {pf.relative_to(ROOT) if pf.is_relative_to(ROOT) else pf}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
