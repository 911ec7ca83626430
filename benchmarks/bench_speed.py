"""The speed targets of issue 10, each as a ratio to vectorbt measured in the same run.

Run with ``.venv/bin/python benchmarks/bench_speed.py`` (``--quick`` for fewer repetitions); ``make bench`` runs
it. It is not part of the test suite (no timed assertion anywhere). What it measures:

1. **One backtest in process**: ``run_backtest(sma_cross(10, 50))`` on 10^6 synthetic 1h bars (seeded
   geometric random walk), long-only, fees 0.001, warm (after an untimed first call), against vectorbt's
   ``Portfolio.from_orders`` for the same orders (TA-Lib SMAs, target-percent orders where the shifted target
   changes, fills at the open, ``value()``), also warm. ``run_backtest`` builds its frames and metrics on first
   access; it is timed twice: to the equity curve (what ``from_orders`` + ``value()`` gives) and to the
   equity, every metric and the trades. The three alternate (best of 7 rounds, 3 with ``--quick``). Equity
   curves are compared. Target: <= 0.5x.
2. **``workbench backtest`` as a process** on real candles (BTC/USDT 5m, 2024-09..2026-02, ~120,000 bars, from
   ``../shared/data`` imported with ``workbench data import`` into a temporary ``WORKBENCH_HOME``), against a
   fresh process that imports vectorbt, reads the same candles (the store's Parquet files, pandas) and runs
   one ``from_orders`` backtest with the same orders, printing total return, Sharpe and max drawdown. Both
   after one untimed process (numba caches populated), then alternated, median of ``--runs``. Target: <= 0.6x.
3. **Sweeps**: 10^4 valid SMA-cross combinations (fast 2..101 x slow 104..500 step 4) on the same bars.
   ``workbench sweep ... --json`` as a whole process (start-up, loading, the sweep, the table and the JSON
   written), and ``sweep()`` in process, against vectorbt's classic sweep (``MA.run`` per combination,
   ``ma_above``/``ma_below`` shifted one bar, one ``from_signals`` over all columns, then final value, Sharpe
   and max drawdown) on ``--vbt-combos`` combinations spread over the same grid, in combinations per
   second; in process the two alternate for 3 rounds (2 with ``--quick``) and the best of each counts, the
   process rate is the median process against vectorbt's best rate. Final values are compared on the
   common combinations. Targets: >= 50x (process), >= 100x (in process).

Prints a table and writes every figure plus the machine description to ``benchmarks/results/speed.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import talib

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CANDLES = (
    ROOT.parent / "shared" / "data" / "candles" / "holdout_binance_spot_2024-09_2026-02" / "BTCUSDT_5m.csv.gz"
)
PY = sys.executable
INIT_CASH, FEES, FAST, SLOW = 10_000.0, 0.001, 10, 50
GRID = {"fast": "2:101:1", "slow": "104:500:4"}  # 100 x 100 = 10^4, all valid
TARGETS = {"single": 0.5, "process": 0.6, "sweep_process": 50.0, "sweep_in_process": 100.0}


def synth(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` gap-free 1h Candles from 2000-01-01 UTC (as ``bench_backtest.synth``)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, n)))
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.002, n)))
    index = pd.date_range("2000-01-01", periods=n, freq="1h", tz="UTC", name="time")
    df = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.exponential(10.0, n)},
        index=index,
    )
    df.attrs["timeframe"] = "1h"
    return df


def interleaved(fns: dict[str, Any], reps: int) -> tuple[dict[str, float], dict[str, Any]]:
    """The best time of each function over ``reps`` rounds, the functions alternating within each round (so
    that a change of load on a shared machine hits them alike), after one untimed round."""
    out = {k: f() for k, f in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            out[k] = f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best, out


# ------------------------------------------------------------------------------------------ 1. one backtest


def vbt_from_orders(vbt: Any, close: pd.Series, open_: np.ndarray, freq: str) -> Any:
    """vectorbt for the engine's orders: TA-Lib SMAs, the long state (held when equal), a target-percent
    order where the shifted target changes, filled at the open."""
    c = close.to_numpy()
    f, s = talib.SMA(c, FAST), talib.SMA(c, SLOW)
    state = pd.Series(np.where(f > s, 1.0, np.where(f < s, 0.0, np.nan))).ffill().fillna(0.0).to_numpy()
    eff = np.r_[0.0, state[:-1]]
    prev = np.r_[0.0, eff[:-1]]
    size = np.where(eff != prev, eff, np.nan)
    return vbt.Portfolio.from_orders(
        close, size=size, size_type="targetpercent", price=open_, fees=FEES, init_cash=INIT_CASH, freq=freq
    )


def single(n: int, reps: int) -> dict[str, Any]:
    import vectorbt as vbt

    from workbench.backtest.engine import BacktestConfig, run_backtest
    from workbench.strategies.momentum import SmaCross

    df = synth(n)
    cfg = BacktestConfig(fees=FEES, init_cash=INIT_CASH)
    close = pd.Series(df["close"].to_numpy(), index=df.index.tz_localize(None), name="close")
    open_ = df["open"].to_numpy()

    def ours_equity() -> pd.Series:
        return run_backtest(df, SmaCross(fast=FAST, slow=SLOW), cfg).equity

    def ours_all() -> Any:
        r = run_backtest(df, SmaCross(fast=FAST, slow=SLOW), cfg)
        return r.equity, r.metrics, r.trades

    def theirs() -> pd.Series:
        return vbt_from_orders(vbt, close, open_, "1h").value()

    best, got = interleaved({"equity": ours_equity, "all": ours_all, "vbt": theirs}, reps)
    t_eq, t_all, t_vbt = best["equity"], best["all"], best["vbt"]
    eq, value = got["equity"], got["vbt"]
    big = value.to_numpy() >= 1.0
    rel = np.abs(eq.to_numpy() - value.to_numpy()) / np.abs(value.to_numpy())
    return {
        "bars": n,
        "workbench_equity_s": t_eq,
        "workbench_equity_metrics_trades_s": t_all,
        "vectorbt_from_orders_s": t_vbt,
        "ratio_equity": t_eq / t_vbt,
        "ratio_with_metrics": t_all / t_vbt,
        "max_rel_diff_equity_ge_1": float(rel[big].max()) if big.any() else None,
    }


# ------------------------------------------------------------------------------------------ 2. processes


REF_PROCESS = """
import sys, time, glob
t0 = time.time()
import numpy as np, pandas as pd, talib
from typing import Any
import vectorbt as vbt
FAST, SLOW, FEES, INIT_CASH = {consts}
{fn}
files = sorted(glob.glob(sys.argv[1] + "/**/*.parquet", recursive=True))
df = pd.concat([pd.read_parquet(f) for f in files]).sort_values("ts")
close = pd.Series(df["close"].to_numpy(), index=pd.to_datetime(df["ts"].to_numpy(), unit="ms"))
pf = vbt_from_orders(vbt, close, df["open"].to_numpy(), "5min")
print(len(close), pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown())
"""


def timed_process(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return t


def wait_reports(home: Path, timeout_s: float = 120.0) -> float:
    """Wait (untimed for the ratios) until no stored result's report is still being written by the background
    child a `workbench backtest` / `sweep` leaves (it would otherwise share the CPU with the next timed process);
    the seconds waited."""
    t0 = time.perf_counter()
    root = home / "backtests"
    while any(root.glob("*/.report-pending")) and time.perf_counter() - t0 < timeout_s:
        time.sleep(0.02)
    return time.perf_counter() - t0


def setup_store(home: Path, env: dict[str, str]) -> None:
    cmd = [
        PY,
        "-m",
        "workbench.cli",
        "data",
        "import",
        str(CANDLES),
        "-e",
        "binance",
        "-s",
        "BTC/USDT",
        "-t",
        "5m",
    ]
    timed_process(cmd, env)


def processes(home: Path, env: dict[str, str], runs: int, out_dir: Path) -> dict[str, Any]:
    ref = out_dir / "ref_vbt.py"
    fn = inspect.getsource(vbt_from_orders)
    ref.write_text(textwrap.dedent(REF_PROCESS).format(fn=fn, consts=(FAST, SLOW, FEES, INIT_CASH)))
    store_dir = str(home / "market" / "candles" / "binance" / "BTC-USDT" / "5m")
    ours = [PY, "-m", "workbench.cli", "backtest", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT",
            "-t", "5m", "-p", f"fast={FAST}", "-p", f"slow={SLOW}"]  # fmt: skip
    theirs = [PY, str(ref), store_dir]
    sweep_json = out_dir / "sweep.json"
    sweep_cmd = [PY, "-m", "workbench.cli", "sweep", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT",
                 "-t", "5m", "-g", f"fast={GRID['fast']}", "-g", f"slow={GRID['slow']}", "--json", str(sweep_json)]  # fmt: skip
    for cmd in (ours, theirs, sweep_cmd):  # untimed: numba caches populated, files in the page cache
        timed_process(cmd, env)
        wait_reports(home)
    t_ours, t_theirs, t_sweep, t_report = [], [], [], []
    for _ in range(runs):
        t_ours.append(timed_process(ours, env))
        t_report.append(t_ours[-1] + wait_reports(home))  # until the stored report is in place too
        t_theirs.append(timed_process(theirs, env))
        t_sweep.append(timed_process(sweep_cmd, env))
        wait_reports(home)
    n_valid = json.loads(sweep_json.read_text())["n_valid"]
    return {
        "backtest_process_s": t_ours,
        "backtest_process_with_report_s": t_report,
        "vectorbt_process_s": t_theirs,
        "sweep_process_s": t_sweep,
        "sweep_valid_combinations": n_valid,
        "backtest_process_median_s": statistics.median(t_ours),
        "vectorbt_process_median_s": statistics.median(t_theirs),
        "sweep_process_median_s": statistics.median(t_sweep),
        "ratio_process": statistics.median(t_ours) / statistics.median(t_theirs),
    }


# ------------------------------------------------------------------------------------------ 3. sweeps


def load_store_candles(env: dict[str, str]) -> pd.DataFrame:
    os.environ["WORKBENCH_HOME"] = env["WORKBENCH_HOME"]
    from workbench.config import load_settings
    from workbench.data.store import Store

    return Store.from_settings(load_settings()).candles("binance", "BTC/USDT", "5m")


def vbt_sweep(df: pd.DataFrame, combos: list[tuple[int, int]]) -> tuple[float, pd.Series]:
    import vectorbt as vbt

    close = pd.Series(df["close"].to_numpy(), index=df.index.tz_localize(None), name="close")
    o = df["open"].to_numpy()[:, None]
    t0 = time.perf_counter()
    fm = vbt.MA.run(close, [f for f, _ in combos], short_name="fast")
    sm = vbt.MA.run(close, [s for _, s in combos], short_name="slow")
    entries = fm.ma_above(sm).vbt.fshift(1, fill_value=False)
    exits = fm.ma_below(sm).vbt.fshift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        close, entries, exits, price=o, size=np.inf, fees=FEES, init_cash=INIT_CASH, freq="5min"
    )
    final = pf.final_value()
    pf.sharpe_ratio()
    pf.max_drawdown()
    seconds = time.perf_counter() - t0
    final.index = pd.MultiIndex.from_tuples(
        [(int(a), int(b)) for a, b in final.index], names=["fast", "slow"]
    )
    return seconds, final


def sweeps(df: pd.DataFrame, vbt_combos: int, reps: int) -> dict[str, Any]:
    from workbench.backtest.engine import BacktestConfig
    from workbench.backtest.sweep import parse_grid, sweep
    from workbench.strategies.momentum import SmaCross

    grid = parse_grid([f"fast={GRID['fast']}", f"slow={GRID['slow']}"], SmaCross)
    cfg = BacktestConfig(fees=FEES, init_cash=INIT_CASH)
    sweep(df.iloc[:5000], SmaCross, {"fast": [5, 10], "slow": [50, 60]}, cfg)  # kernels loaded
    all_combos = [(f, s) for f in grid["fast"] for s in grid["slow"] if f < s]
    pick = np.linspace(0, len(all_combos) - 1, vbt_combos).round().astype(int)
    sub = [all_combos[i] for i in sorted(set(pick))]
    vbt_sweep(df.iloc[:3000], sub[:3])  # warm
    times, vbt_times = [], []
    for _ in range(reps):  # alternated, so that a change of load hits both alike; the best of each
        t0 = time.perf_counter()
        res = sweep(df, SmaCross, grid, cfg)
        times.append(time.perf_counter() - t0)
        t_vbt, final = vbt_sweep(df, sub)
        vbt_times.append(t_vbt)
    t_ours, t_vbt = min(times), min(vbt_times)
    ours = res.table.set_index(["fast", "slow"])["final_equity"]
    diff = (ours.reindex(final.index) - final).abs() / final.abs()
    return {
        "bars": len(df),
        "combinations": res.n_valid,
        "sweep_in_process_s": times,
        "sweep_in_process_best_s": t_ours,
        "sweep_per_s": res.n_valid / t_ours,
        "vectorbt_combinations": len(sub),
        "vectorbt_s": vbt_times,
        "vectorbt_best_s": t_vbt,
        "vectorbt_per_s": len(sub) / t_vbt,
        "ratio_in_process": (res.n_valid / t_ours) / (len(sub) / t_vbt),
        "max_rel_diff_final_equity": float(diff.max()),
    }


# ------------------------------------------------------------------------------------------ main


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def machine() -> dict[str, Any]:
    import numba
    import vectorbt as vbt

    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "numba": numba.__version__,
        "vectorbt": vbt.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller vectorbt subset")
    ap.add_argument(
        "--runs", type=int, default=None, help="timed processes of each kind (default 5, quick 3)"
    )
    ap.add_argument(
        "--vbt-combos", type=int, default=None, help="vectorbt sweep subset (default 300, quick 100)"
    )
    ap.add_argument("--bars", type=int, default=1_000_000, help="bars of the single backtest")
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    vbt_combos = args.vbt_combos or (100 if args.quick else 200)
    reps = 3 if args.quick else 7
    sweep_reps = 2 if args.quick else 3
    if not CANDLES.exists():
        sys.exit(f"{CANDLES} not found (the shared data bundle)")
    out: dict[str, Any] = {"machine": machine(), "targets": TARGETS}
    print(f"1. one backtest, {args.bars:,} bars ...", flush=True)
    out["single"] = single(args.bars, reps)
    print(json.dumps(out["single"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(ROOT)}
        setup_store(home, env)
        print("2. processes ...", flush=True)
        out["process"] = processes(home, env, runs, Path(tmp))
        print(json.dumps(out["process"]), flush=True)
        print("3. sweeps ...", flush=True)
        df = load_store_candles(env)
        out["sweep"] = sweeps(df, vbt_combos, sweep_reps)
    s, p, w = out["single"], out["process"], out["sweep"]
    per_s_process = w["combinations"] / p["sweep_process_median_s"]
    w["sweep_process_per_s"] = per_s_process
    w["ratio_process"] = per_s_process / w["vectorbt_per_s"]
    rows = [
        ("one backtest, to the equity (x vectorbt's time)", s["ratio_equity"], f"<= {TARGETS['single']}",
         f"{s['workbench_equity_s']:.3f} s vs {s['vectorbt_from_orders_s']:.3f} s"),
        ("... with every metric and the trades", s["ratio_with_metrics"], "",
         f"{s['workbench_equity_metrics_trades_s']:.3f} s"),
        ("workbench backtest process (x vectorbt process)", p["ratio_process"], f"<= {TARGETS['process']}",
         f"{p['backtest_process_median_s']:.2f} s vs {p['vectorbt_process_median_s']:.2f} s"),
        ("workbench sweep process (x vectorbt combos/s)", w["ratio_process"], f">= {TARGETS['sweep_process']}",
         f"{per_s_process:,.0f}/s ({p['sweep_process_median_s']:.2f} s) vs {w['vectorbt_per_s']:,.1f}/s"),
        ("sweep() in process (x vectorbt combos/s)", w["ratio_in_process"], f">= {TARGETS['sweep_in_process']}",
         f"{w['sweep_per_s']:,.0f}/s ({w['sweep_in_process_best_s']:.2f} s)"),
    ]  # fmt: skip
    print()
    for name, ratio, target, detail in rows:
        print(f"{name:52s} {ratio:9.2f}  {target:8s} {detail}")
    print(
        f"agreement: equity {s['max_rel_diff_equity_ge_1']:.1e}, sweep final equity {w['max_rel_diff_final_equity']:.1e}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(out, indent=1, default=str))
    print(f"written to {RESULTS / 'speed.json'}")


if __name__ == "__main__":
    main()
