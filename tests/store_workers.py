"""Worker processes for the multi-process store tests (run as scripts by tests/test_store_concurrency.py).

writer: commits generation g = 0, 1, 2, ...: rows [0, (g+1)*PAGE) of the truth, every row stamped with
volume = g + 1, so one commit rewrites every part file of the series. A reader that ever sees a mix of
generations, or a row count that is not (g+1)*PAGE, has seen a torn or partial write.
reader: reads in a loop until the writer's done-file appears; checks every snapshot; prints a JSON report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.store import Store

PAGE = 2500  # 5m bars: a page spans about 8.7 days, so commits keep crossing month (part) boundaries
T0 = 1_704_067_200_000  # 2024-01-01
STEP = 300_000


def truth(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    return pd.DataFrame(
        {
            "ts": T0 + STEP * np.arange(n, dtype="int64"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": np.zeros(n),
        }
    )


def writer(root: str, generations: int, grace: float, done: str, symbol: str = "GEN/USDT") -> None:
    store = Store(root, gc_grace_s=grace)
    key = store.key("candles", "fake", symbol, "5m")
    full = truth(generations * PAGE)
    for g in range(generations):
        df = full.iloc[: (g + 1) * PAGE].copy()
        df["volume"] = float(g + 1)
        store.write(key, df)
    Path(done).write_text("done")


def reader(root: str, grace: float, done: str, max_s: float) -> None:
    store = Store(root, gc_grace_s=grace)
    full = truth(200 * PAGE)
    reads = errors = 0
    seen_gens: set[int] = set()
    problems: list[str] = []
    deadline = time.time() + max_s
    while time.time() < deadline:
        finished = Path(done).exists()
        try:
            if store.manifest(store.key("candles", "fake", "GEN/USDT", "5m")) is None:
                time.sleep(0.01)
                continue
            c = store.candles("fake", "GEN/USDT", "5m")
            q = store.sql(
                "SELECT count(*) AS n, min(volume) AS lo, max(volume) AS hi FROM candles WHERE symbol = 'GEN/USDT'"
            )
        except Exception as e:  # any error is a finding: lock errors, missing files, corrupt reads
            errors += 1
            problems.append(f"{type(e).__name__}: {e}")
            continue
        reads += 1
        n = len(c)
        vols = np.unique(c["volume"].to_numpy())
        if len(vols) != 1:
            problems.append(f"torn read: generations {vols.tolist()} in one snapshot")
            continue
        g = int(vols[0])
        seen_gens.add(g)
        if n != g * PAGE:
            problems.append(f"partial read: generation {g} with {n} rows, expected {g * PAGE}")
        ts = c.index.as_unit("ns").asi8 // 1_000_000
        if not np.array_equal(ts, full["ts"].to_numpy()[:n]):
            problems.append(f"wrong timestamps in generation {g}")
        if not np.array_equal(c["close"].to_numpy(), full["close"].to_numpy()[:n]):
            problems.append(f"wrong closes in generation {g}")
        lo, hi = float(q["lo"].iloc[0]), float(q["hi"].iloc[0])
        if lo != hi:
            problems.append(f"torn SQL read: volumes {lo}..{hi}")
        if finished:
            break
    print(
        json.dumps(
            {
                "reads": reads,
                "errors": errors,
                "generations_seen": sorted(seen_gens),
                "problems": problems[:20],
            }
        )
    )


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "writer":
        writer(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], *sys.argv[6:7])
    elif cmd == "reader":
        reader(sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    else:
        raise SystemExit(f"unknown command {cmd}")
