"""Benchmark of the market-data store (NFR-PERF-1, NFR-PERF-2), with DuckDB as the reference in the same run.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_store.py``); it is not part of the test suite.

What it measures, on synthetic 1-minute candles (a seeded random walk with consistent high/low, numpy only):

* ingest: ``Store.write`` of 5 symbols x 1,000,000 candles (5M rows, 2023-01-01 onwards, one write per symbol,
  Arrow tables in, zstd). ``write`` validates the candles, sorts, splits into monthly parts, writes each part
  with pyarrow, fsyncs it and swaps the manifest: all of that is in the time. Validation alone is timed too.
* idempotent re-write of the same 5M rows (every part is read back, merged, found unchanged and skipped),
* incremental append of 1,000 new rows to an existing series (the collector's common case),
* warm read of one symbol-year (2023: 525,600 rows) as Candles via ``Store.candles`` and as Arrow via
  ``Store.read_table``: median and min of N repetitions after 2 warm-ups,
* the same read when the process has not verified the parts yet (the first read of a part in a process reads its
  bytes, checks their CRC-32 and the footer against the manifest, and decodes from memory), and the CRC-32 alone,
* a small compression sweep (1 symbol; zstd, snappy, lz4, none): ingest and warm read.

Reference, same process, same data: DuckDB writing each symbol's Arrow table to one Parquet file (``COPY``) and
into a native table in a temporary ``.duckdb`` file (one table per symbol, like one series folder per symbol),
pyarrow writing the same single Parquet file, and DuckDB reading the symbol-year back from the Parquet file and
from the native table. Ratios are workbench time / reference time (> 1 means the store is slower).

Prints a table and writes every figure plus the machine description to ``benchmarks/results/store.json``.
Data lives in a temporary folder that is removed at the end. ``--profile`` also writes cProfile listings of one
1M-row write, one idempotent re-write and the warm reads to ``benchmarks/results/store_profile.txt``.
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
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.data import store as store_mod
from workbench.data.store import Store
from workbench.types import CANDLE_COLUMNS, Timeframe, validate_candles

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MINUTE_MS = 60_000
START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
YEAR = ("2023-01-01", "2024-01-01")  # 525,600 one-minute bars
YEAR_START_MS, YEAR_END_MS = START_MS, 1_704_067_200_000
EXCHANGE = "bench"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
TARGET_INGEST = 1_000_000.0  # candles/s (NFR-PERF-1)
TARGET_READ_S = 0.050  # warm symbol-year read (NFR-PERF-2)
DUCK_THREADS = 2  # the store's default duckdb_threads; the reference gets the same


# ------------------------------------------------------------------------------------------ data


def synth_candles(n: int, seed: int, price: float) -> pa.Table:
    """``n`` gap-free 1-minute candles from START_MS: a geometric random walk, open = previous close,
    high/low outside both open and close, exponential volume. Valid by construction."""
    rng = np.random.default_rng(seed)
    ts = START_MS + np.arange(n, dtype=np.int64) * MINUTE_MS
    close = price * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    open_ = np.empty(n)
    open_[0] = price
    open_[1:] = close[:-1]
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 3e-4, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 3e-4, n)))
    volume = rng.exponential(10.0, n)
    return pa.table({"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


def next_rows(table: pa.Table, n: int, seed: int) -> pa.Table:
    """``n`` candles continuing right after ``table``'s last bar."""
    last_ts = int(table.column("ts")[-1].as_py())
    last_close = float(table.column("close")[-1].as_py())
    t = synth_candles(n, seed, last_close)
    ts = t.column("ts").to_numpy() - START_MS + last_ts + MINUTE_MS
    return t.set_column(0, "ts", pa.array(ts))


def candles_frame(table: pa.Table) -> pd.DataFrame:
    """The Candles shape ``Store.candles`` returns, built from an Arrow table (used for the reference)."""
    ts = table.column("ts").to_numpy()
    index = pd.DatetimeIndex(ts.astype("datetime64[ms]").astype("datetime64[ns]"), name="time").tz_localize(
        "UTC"
    )
    return pd.DataFrame({c: table.column(c).to_numpy() for c in CANDLE_COLUMNS}, index=index)


# ------------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat(
    fn: Callable[[], Any], reps: int, warmups: int = 2, check: Callable[[Any], None] | None = None
) -> dict:
    for _ in range(warmups):
        out = fn()
        if check:
            check(out)
        del out
    times = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(reps):
        t, out = timed(fn)
        times.append(t)
        del out
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "reps": reps,
        "warmups": warmups,
        "minor_page_faults_per_call": faults / reps,
    }


def rows_check(n: int) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        got = out.num_rows if isinstance(out, pa.Table) else len(out)
        if got != n:
            raise AssertionError(f"read returned {got} rows, expected {n}")

    return check


# ------------------------------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    model = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    if model is None:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": model,
        "mem_total_gib": round(mem_total / 2**30, 1) if mem_total else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def filesystem_of(path: Path) -> str | None:
    """The file-system type holding ``path`` (longest matching mount point in /proc/mounts)."""
    best, fstype = "", None
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fstype = parts[1], parts[2]
    except OSError:
        return None
    return fstype


# ------------------------------------------------------------------------------------------ benchmark


def run(args: argparse.Namespace) -> dict[str, Any]:
    n_sym, n = args.symbols, args.rows
    tf = Timeframe.parse("1m")
    year_rows = (YEAR_END_MS - YEAR_START_MS) // MINUTE_MS
    if n < year_rows:
        raise SystemExit(f"--rows must be at least {year_rows} (one symbol-year)")
    symbols = SYMBOLS[:n_sym] if n_sym <= len(SYMBOLS) else tuple(f"S{i}/USDT" for i in range(n_sym))
    total = n_sym * n
    res: dict[str, Any] = {
        "benchmark": "store",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {
            "symbols": n_sym,
            "rows_per_symbol": n,
            "rows_total": total,
            "timeframe": "1m",
            "first_bar": "2023-01-01T00:00:00Z",
            "input": "pyarrow.Table (ts int64 ms, float64 OHLCV), one write per symbol",
            "read_range": f"{YEAR[0]} <= t < {YEAR[1]} ({year_rows} rows)",
        },
        "settings": {
            "compression": "zstd",
            "duckdb_threads": DUCK_THREADS,
            "reps": args.reps,
            "warmups": 2,
            "profiled": bool(args.profile),
        },
    }
    base = Path(tempfile.mkdtemp(prefix="wb-bench-store-", dir=args.tmp))
    res["machine"] = machine()
    res["machine"]["data_dir_fs"] = filesystem_of(base)
    prof = cProfile.Profile() if args.profile else None
    prof_text: list[str] = []
    try:
        t_gen, tables = timed(lambda: [synth_candles(n, 1000 + i, 100.0 * (i + 1)) for i in range(n_sym)])
        res["data"]["generate_s"] = t_gen
        print(f"generated {total:,} candles ({n_sym} x {n:,}) in {t_gen:.2f} s; data in {base}", flush=True)

        # ---- validation alone (part of write()) -----------------------------------------------------
        def validate_all() -> None:
            for t in tables:
                validate_candles(
                    t.column("ts").to_numpy(),
                    {c: t.column(c).to_numpy() for c in CANDLE_COLUMNS},
                    timeframe=tf,
                    source="bench",
                    check_order=False,
                )

        t_val, _ = timed(validate_all)

        # ---- workbench ingest ---------------------------------------------------------------------
        store = Store(base / "store", compression="zstd", duckdb_threads=DUCK_THREADS)
        warm = store.key("candles", EXCHANGE, "WARM/UP", "1m")
        store.write(warm, tables[0].slice(0, 50_000))  # warm up pyarrow's writer and numpy paths
        keys = [store.key("candles", EXCHANGE, s, "1m") for s in symbols]
        gc.collect()
        per_write, parts = [], 0
        for i, (k, t) in enumerate(zip(keys, tables, strict=True)):
            if prof is not None and i == 0:
                prof.enable()
            dt_w, wr = timed(lambda k=k, t=t: store.write(k, t))
            if prof is not None and i == 0:
                prof.disable()
                prof_text.append(_profile_text(prof, f"one write of {n:,} rows (fresh series)"))
                prof = cProfile.Profile()
            if wr.rows_added != n:
                raise AssertionError(f"{k}: added {wr.rows_added} rows, expected {n}")
            per_write.append(dt_w)
            parts += wr.parts_written
        t_ingest = sum(per_write)
        res["ingest"] = {
            "rows": total,
            "seconds": t_ingest,
            "candles_per_s": total / t_ingest,
            "per_write_s": per_write,
            "parts_written": parts,
            "validate_seconds": t_val,
            "validate_share": t_val / t_ingest,
            "bytes_on_disk": _tree_bytes(base / "store" / "market" / "candles" / EXCHANGE, skip="WARM-UP"),
            "target_candles_per_s": TARGET_INGEST,
            "target_met": total / t_ingest >= TARGET_INGEST,
        }
        print(f"ingest: {total / t_ingest:,.0f} candles/s ({t_ingest:.2f} s)", flush=True)

        # ---- idempotent re-write --------------------------------------------------------------------
        gc.collect()
        if prof is not None:
            prof.enable()
        t_rw, wrs = timed(lambda: [store.write(k, t) for k, t in zip(keys, tables, strict=True)])
        if prof is not None:
            prof.disable()
            prof_text.append(_profile_text(prof, f"idempotent re-write of {total:,} rows ({n_sym} writes)"))
            prof = cProfile.Profile()
        if any(w.parts_written or w.rows_added or w.rows_updated for w in wrs):
            raise AssertionError(f"idempotent re-write changed the store: {wrs}")
        res["rewrite_idempotent"] = {
            "rows": total,
            "seconds": t_rw,
            "candles_per_s": total / t_rw,
            "parts_written": 0,
            "ratio_to_ingest": t_rw / t_ingest,
        }
        print(f"idempotent re-write: {t_rw:.2f} s ({t_rw / t_ingest:.2f}x the first ingest)", flush=True)

        # ---- warm reads ---------------------------------------------------------------------------
        check = rows_check(year_rows)
        k0, s0 = keys[0], symbols[0]
        t_first, df_first = timed(lambda: store.candles(EXCHANGE, s0, "1m", *YEAR))
        check(df_first)
        _check_frame(df_first, tables[0])
        del df_first
        if prof is not None:
            prof.enable()
        rd_pd = repeat(lambda: store.candles(EXCHANGE, s0, "1m", *YEAR), args.reps, check=check)
        if prof is not None:
            prof.disable()
            prof_text.append(
                _profile_text(prof, f"{args.reps + 2} warm Store.candles reads of one symbol-year")
            )
            prof = cProfile.Profile()
        rd_pa = repeat(lambda: store.read_table(k0, *YEAR), args.reps, check=check)

        # first read of the parts in a process: each part's bytes are read, checksummed and checked against
        # the manifest before decoding (forgetting what this process verified makes every call such a read)
        def first_read() -> pd.DataFrame:
            store_mod._VERIFIED.clear()
            return store.candles(EXCHANGE, s0, "1m", *YEAR)

        rd_verify = repeat(first_read, args.reps, check=check)
        d0 = store.series_dir(k0)
        year_parts = [
            (d0 / "parts" / p["file"]).read_bytes()
            for p in store.manifest(k0)["parts"]
            if p["min_ts"] < YEAR_END_MS and p["max_ts"] >= YEAR_START_MS
        ]
        t_crc, _ = timed(lambda yp=year_parts: [zlib.crc32(b) for b in yp])
        # SQL over the whole store (every part of every symbol): once with nothing verified yet, then warm
        q_all = "SELECT count(*) AS n, sum(close) AS c FROM candles"
        store_mod._VERIFIED.clear()
        t_sql_first, out_sql = timed(lambda: store.sql(q_all))
        if int(out_sql["n"].iloc[0]) != total + 50_000:
            raise AssertionError(f"SQL counted {out_sql['n'].iloc[0]} rows")
        sql_warm = repeat(lambda: store.sql(q_all), 5, warmups=1)
        res["verify"] = {
            "first_read_candles_in_process": rd_verify,
            "parts": len(year_parts),
            "part_bytes": sum(map(len, year_parts)),
            "crc32_s": t_crc,
            "crc32_gb_per_s": sum(map(len, year_parts)) / t_crc / 1e9,
            "sql_whole_store_first_s": t_sql_first,
            "sql_whole_store_warm": sql_warm,
            "store_part_bytes": _tree_bytes(base / "store" / "market" / "candles" / EXCHANGE),
            "note": "first_read = Store.candles of the year with the process's verified-part cache cleared before "
            "each call (bytes read from the page cache, CRC-32 and footer checked, decoded from memory)",
        }
        del year_parts
        res["read"] = {
            "rows": year_rows,
            "first_call_in_process_s": t_first,
            "candles_pandas": rd_pd,
            "read_table_arrow": rd_pa,
            "target_s": TARGET_READ_S,
            "target_met": rd_pd["median_s"] <= TARGET_READ_S,
        }
        print(
            f"read symbol-year: candles {rd_pd['median_s'] * 1e3:.1f} ms, "
            f"read_table {rd_pa['median_s'] * 1e3:.1f} ms (median); first read in a process (verifying) "
            f"{rd_verify['median_s'] * 1e3:.1f} ms",
            flush=True,
        )

        # ---- incremental append -------------------------------------------------------------------
        appends, tail = [], tables[0]
        for j in range(args.appends):
            new = next_rows(tail, 1_000, 5000 + j)
            dt_a, wr = timed(lambda new=new: store.write(k0, new))
            if wr.rows_added != 1_000 or wr.parts_written not in (1, 2):
                raise AssertionError(f"append {j}: {wr}")
            appends.append(dt_a)
            tail = new
        res["append_1000"] = {
            "rows": 1_000,
            "repeats": args.appends,
            "median_s": statistics.median(appends),
            "min_s": min(appends),
            "max_s": max(appends),
            "note": "each append rewrites the series' current monthly part (the month grows as it is appended)",
        }
        print(f"append 1,000 rows: {statistics.median(appends) * 1e3:.1f} ms (median)", flush=True)
        store.close()

        # ---- reference: DuckDB / pyarrow, same data, same process -----------------------------------
        ref_dir = base / "reference"
        ref_dir.mkdir()
        files = [ref_dir / f"{s.replace('/', '-')}.parquet" for s in symbols]
        mem = duckdb.connect(":memory:")
        mem.execute(f"SET threads={DUCK_THREADS}")

        def duck_copy() -> None:
            for t, f in zip(tables, files, strict=True):
                mem.register("src", t)
                mem.execute(f"COPY src TO '{f}' (FORMAT parquet, COMPRESSION zstd)")
                mem.unregister("src")

        mem.register("src", tables[0].slice(0, 50_000))  # warm-up, like the store's
        mem.execute(f"COPY src TO '{ref_dir / 'warm.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
        mem.unregister("src")
        gc.collect()
        t_copy, _ = timed(duck_copy)

        pa_files = [ref_dir / f"pa-{s.replace('/', '-')}.parquet" for s in symbols]
        gc.collect()
        t_pq, _ = timed(
            lambda: [pq.write_table(t, f, compression="zstd") for t, f in zip(tables, pa_files, strict=True)]
        )

        db_path = ref_dir / "ref.duckdb"
        db = duckdb.connect(str(db_path))
        db.execute(f"SET threads={DUCK_THREADS}")
        tnames = [f"c{i}" for i in range(n_sym)]

        def duck_native() -> None:
            for t, name in zip(tables, tnames, strict=True):
                db.register("src", t)
                db.execute(f"CREATE TABLE {name} AS SELECT * FROM src")
                db.unregister("src")
            db.execute("CHECKPOINT")

        gc.collect()
        t_native, _ = timed(duck_native)
        res["reference_ingest"] = {
            "duckdb_copy_parquet_zstd": {"seconds": t_copy, "candles_per_s": total / t_copy},
            "pyarrow_write_table_zstd": {"seconds": t_pq, "candles_per_s": total / t_pq},
            "duckdb_native_table": {"seconds": t_native, "candles_per_s": total / t_native},
            "note": "one Parquet file / one native table per symbol; no fsync in the reference "
            "(the store fsyncs each part and the manifest); native ingest ends with CHECKPOINT",
        }
        print(
            f"reference ingest: duckdb COPY {total / t_copy:,.0f}/s, native {total / t_native:,.0f}/s",
            flush=True,
        )

        q = "SELECT ts, open, high, low, close, volume FROM {src} WHERE ts >= ? AND ts < ?"
        p = [YEAR_START_MS, YEAR_END_MS]
        f0 = str(files[0])
        ref_pq_arrow = repeat(
            lambda: mem.sql(q.format(src="read_parquet(?)"), params=[f0, *p]).to_arrow_table(),
            args.reps,
            check=check,
        )
        ref_pq_pd = repeat(
            lambda: candles_frame(mem.sql(q.format(src="read_parquet(?)"), params=[f0, *p]).to_arrow_table()),
            args.reps,
            check=check,
        )
        ref_nat_arrow = repeat(
            lambda: db.sql(q.format(src=tnames[0]), params=p).to_arrow_table(), args.reps, check=check
        )
        ref_nat_pd = repeat(
            lambda: candles_frame(db.sql(q.format(src=tnames[0]), params=p).to_arrow_table()),
            args.reps,
            check=check,
        )
        ref_nat_df = repeat(lambda: db.sql(q.format(src=tnames[0]), params=p).df(), args.reps, check=check)
        _check_frame(candles_frame(db.sql(q.format(src=tnames[0]), params=p).to_arrow_table()), tables[0])
        res["reference_read"] = {
            "duckdb_parquet_arrow": ref_pq_arrow,
            "duckdb_parquet_pandas": ref_pq_pd,
            "duckdb_native_arrow": ref_nat_arrow,
            "duckdb_native_pandas": ref_nat_pd,
            "duckdb_native_df_plain": ref_nat_df,
            "note": "'pandas' = the same Candles frame the store returns (UTC DatetimeIndex) built from the Arrow "
            "result; 'df_plain' = DuckDB's .df() with ts left as an int64 column",
        }

        # native append reference: 1,000 rows into the native table, committed
        nat_app = []
        tail = next_rows(tables[0], 1_000, 4000)
        for j in range(args.appends):
            new = next_rows(tail, 1_000, 6000 + j)
            db.register("src", new)
            dt_a, _ = timed(lambda: db.execute(f"INSERT INTO {tnames[0]} SELECT * FROM src"))
            db.unregister("src")
            nat_app.append(dt_a)
            tail = new
        res["reference_append_1000"] = {
            "duckdb_native_insert": {
                "median_s": statistics.median(nat_app),
                "min_s": min(nat_app),
                "repeats": args.appends,
            }
        }
        db.close()
        mem.close()

        # ---- compression sweep (1 symbol) ---------------------------------------------------------
        sweep = {}
        for comp in args.compressions:
            s = Store(base / f"store-{comp}", compression=comp, duckdb_threads=DUCK_THREADS)
            k = s.key("candles", EXCHANGE, symbols[0], "1m")
            gc.collect()
            t_w, _ = timed(lambda s=s, k=k: s.write(k, tables[0]))
            r = repeat(lambda s=s: s.candles(EXCHANGE, symbols[0], "1m", *YEAR), args.sweep_reps, check=check)
            sweep[comp] = {
                "ingest_candles_per_s": n / t_w,
                "ingest_s": t_w,
                "read_candles_median_s": r["median_s"],
                "read_candles_min_s": r["min_s"],
                "bytes_on_disk": _tree_bytes(base / f"store-{comp}" / "market"),
            }
            s.close()
        res["compression_sweep_1_symbol"] = sweep

        # ---- ratios -------------------------------------------------------------------------------
        ing_ref = res["reference_ingest"]
        res["ratios"] = {
            "ingest_time_vs_duckdb_copy_parquet": t_ingest / t_copy,
            "ingest_time_vs_pyarrow_write_table": t_ingest / t_pq,
            "ingest_time_vs_duckdb_native": t_ingest / ing_ref["duckdb_native_table"]["seconds"],
            "read_candles_vs_duckdb_parquet_pandas": rd_pd["median_s"] / ref_pq_pd["median_s"],
            "read_candles_vs_duckdb_native_pandas": rd_pd["median_s"] / ref_nat_pd["median_s"],
            "read_table_vs_duckdb_parquet_arrow": rd_pa["median_s"] / ref_pq_arrow["median_s"],
            "read_table_vs_duckdb_native_arrow": rd_pa["median_s"] / ref_nat_arrow["median_s"],
            "append_vs_duckdb_native_insert": res["append_1000"]["median_s"] / statistics.median(nat_app),
            "note": "workbench time / reference time (medians); > 1 means the store is slower",
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if prof_text:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "store_profile.txt").write_text("\n\n".join(prof_text))
    return res


def _check_frame(df: pd.DataFrame, src: pa.Table) -> None:
    """The read-back frame equals the written data for the year (so the timings are of correct reads)."""
    ts = src.column("ts").to_numpy()
    sel = (ts >= YEAR_START_MS) & (ts < YEAR_END_MS)
    if not isinstance(df.index, pd.DatetimeIndex) or str(df.index.tz) != "UTC":
        raise AssertionError("read-back index is not a UTC DatetimeIndex")
    if not np.array_equal(df.index.asi8 // 1_000_000, ts[sel]):
        raise AssertionError("read-back timestamps differ from the written ones")
    for c in CANDLE_COLUMNS:
        if not np.array_equal(df[c].to_numpy(), src.column(c).to_numpy()[sel]):
            raise AssertionError(f"read-back column {c} differs from the written one")


def _tree_bytes(path: Path, skip: str | None = None) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        if skip and skip in dirnames:
            dirnames.remove(skip)
        total += sum((Path(dirpath) / f).stat().st_size for f in filenames)
    return total


def _profile_text(prof: cProfile.Profile, title: str, top: int = 30) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return f"==== {title} ====\n{buf.getvalue()}"


# ------------------------------------------------------------------------------------------ report


def report(res: dict[str, Any]) -> str:
    m, ing, rw, rd = res["machine"], res["ingest"], res["rewrite_idempotent"], res["read"]
    ri, rr, ra, rt = (
        res["reference_ingest"],
        res["reference_read"],
        res["reference_append_1000"],
        res["ratios"],
    )
    ms = 1e3

    lbl_ingest = f"ingest {ing['rows'] / 1e6:g}M, candles/s (incl. validation, fsync)"
    lbl_rewrite = f"idempotent re-write {rw['rows'] / 1e6:g}M, s"

    def ok(flag: bool) -> str:
        return "MET" if flag else "MISSED"

    lines = [
        f"Store benchmark  {res['date_utc']}",
        f"machine: {m['cpus_usable']} usable cores of {m['cpu_count']}, {m['cpu_model']}, {m['mem_total_gib']} GiB "
        f"RAM, data on {m.get('data_dir_fs')}; Python {m['python']}, duckdb {m['duckdb']}, pyarrow {m['pyarrow']}",
        f"data: {res['data']['symbols']} symbols x {res['data']['rows_per_symbol']:,} 1m candles "
        f"= {res['data']['rows_total']:,} rows; read = one symbol-year ({rd['rows']:,} rows), "
        f"median/min of {rd['candles_pandas']['reps']} warm reps after 2 warm-ups",
        "",
        f"{'measure':<52}{'workbench':>14}{'reference':>14}{'ratio':>8}  reference",
        "-" * 110,
        f"{lbl_ingest:<52}{ing['candles_per_s']:>14,.0f}"
        f"{ri['duckdb_copy_parquet_zstd']['candles_per_s']:>14,.0f}{rt['ingest_time_vs_duckdb_copy_parquet']:>8.2f}"
        "  duckdb COPY -> 1 parquet/symbol (time ratio)",
        f"{'':<52}{'':>14}{ri['pyarrow_write_table_zstd']['candles_per_s']:>14,.0f}"
        f"{rt['ingest_time_vs_pyarrow_write_table']:>8.2f}  pyarrow write_table -> 1 parquet/symbol",
        f"{'':<52}{'':>14}{ri['duckdb_native_table']['candles_per_s']:>14,.0f}"
        f"{rt['ingest_time_vs_duckdb_native']:>8.2f}  duckdb native table (.duckdb file)",
        f"{'  of which validate_candles, s':<52}{ing['validate_seconds']:>14.3f}"
        f"{'':>14}{'':>8}  ({ing['validate_share']:.0%} of ingest time)",
        f"{lbl_rewrite:<52}{rw['seconds']:>14.2f}{ing['seconds']:>14.2f}"
        f"{rw['ratio_to_ingest']:>8.2f}  the first ingest",
        f"{'append 1,000 rows, ms (median)':<52}{res['append_1000']['median_s'] * ms:>14.1f}"
        f"{ra['duckdb_native_insert']['median_s'] * ms:>14.1f}{rt['append_vs_duckdb_native_insert']:>8.1f}"
        "  duckdb native INSERT",
        f"{'read year -> pandas Candles, ms median (min)':<52}"
        f"{_mm(rd['candles_pandas'])}{_mm(rr['duckdb_parquet_pandas'])}"
        f"{rt['read_candles_vs_duckdb_parquet_pandas']:>8.2f}  duckdb read_parquet(1 file) -> same frame",
        f"{'':<52}{'':>14}{_mm(rr['duckdb_native_pandas'])}"
        f"{rt['read_candles_vs_duckdb_native_pandas']:>8.2f}  duckdb native table -> same frame",
        f"{'read year -> Arrow (read_table), ms median (min)':<52}"
        f"{_mm(rd['read_table_arrow'])}{_mm(rr['duckdb_parquet_arrow'])}"
        f"{rt['read_table_vs_duckdb_parquet_arrow']:>8.2f}  duckdb read_parquet(1 file) -> Arrow",
        f"{'':<52}{'':>14}{_mm(rr['duckdb_native_arrow'])}"
        f"{rt['read_table_vs_duckdb_native_arrow']:>8.2f}  duckdb native table -> Arrow",
        f"{'':<52}{'':>14}{_mm(rr['duckdb_native_df_plain'])}{'':>8}  duckdb native .df() (ts as int64)",
        f"{'first Store.candles call in the process, ms':<52}{rd['first_call_in_process_s'] * ms:>14.1f}",
        f"{'read year, parts not yet verified in the process, ms':<52}"
        f"{_mm(res['verify']['first_read_candles_in_process'])}{'':>14}"
        f"{res['verify']['first_read_candles_in_process']['median_s'] / rd['candles_pandas']['median_s']:>8.2f}"
        "  the warm read (checksums verified once per process)",
        f"{'  of which CRC-32 of the parts, ms':<52}{res['verify']['crc32_s'] * ms:>14.1f}"
        f"{'':>14}{'':>8}  ({res['verify']['part_bytes'] / 2**20:.1f} MiB in {res['verify']['parts']} parts, "
        f"{res['verify']['crc32_gb_per_s']:.1f} GB/s)",
        f"{'SQL count+sum over the whole store, first / warm, ms':<52}"
        f"{res['verify']['sql_whole_store_first_s'] * ms:>7.0f} / {res['verify']['sql_whole_store_warm']['median_s'] * ms:<6.0f}"
        f"{'':>14}{'':>8}  (first verifies all {res['verify']['store_part_bytes'] / 2**20:.0f} MiB of parts)",
        f"{'minor page faults per warm read (candles / arrow)':<52}"
        f"{rd['candles_pandas']['minor_page_faults_per_call']:>7,.0f} / {rd['read_table_arrow']['minor_page_faults_per_call']:<,.0f}",
        "",
        "compression sweep (1 symbol, 1M rows):",
        f"  {'codec':<8}{'ingest/s':>14}{'read ms':>10}{'MiB':>8}",
    ]
    for comp, s in res["compression_sweep_1_symbol"].items():
        lines.append(
            f"  {comp:<8}{s['ingest_candles_per_s']:>14,.0f}{s['read_candles_median_s'] * ms:>10.1f}"
            f"{s['bytes_on_disk'] / 2**20:>8.1f}"
        )
    lines += [
        "",
        f"NFR-PERF-1 ingest >= {TARGET_INGEST:,.0f} candles/s: {ok(ing['target_met'])} "
        f"({ing['candles_per_s']:,.0f})",
        f"NFR-PERF-2 warm symbol-year read <= {TARGET_READ_S * ms:.0f} ms: {ok(rd['target_met'])} "
        f"({rd['candles_pandas']['median_s'] * ms:.1f} ms median)",
        f"peak RSS {res['peak_rss_mib']:,.0f} MiB; total {res['total_s']:.1f} s",
    ]
    return "\n".join(lines)


def _mm(r: dict[str, Any]) -> str:
    return f"{r['median_s'] * 1e3:>7.1f} ({r['min_s'] * 1e3:>4.1f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=5, help="number of symbols (default 5)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="1m candles per symbol (default 1,000,000)")
    ap.add_argument("--reps", type=int, default=20, help="timed warm read repetitions (default 20)")
    ap.add_argument("--appends", type=int, default=5, help="timed 1,000-row appends (default 5)")
    ap.add_argument("--sweep-reps", type=int, default=5, help="warm read repetitions per codec (default 5)")
    ap.add_argument(
        "--compressions", nargs="*", default=["zstd", "snappy", "lz4", "none"], help="codecs for the sweep"
    )
    ap.add_argument("--tmp", default=None, help="parent of the temporary data folder (default: system temp)")
    ap.add_argument("--out", default=str(RESULTS / "store.json"), help="JSON output path")
    ap.add_argument("--profile", action="store_true", help="also write cProfile listings to results/")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(args)
    res["total_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print()
    print(report(res))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
