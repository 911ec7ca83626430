"""ML benchmarks: training throughput (samples/s) of each price architecture and inference latency per bar of
a registered model, through the prediction service (the live path: features + scaler + model) and for the
model alone. Run: ``.venv/bin/python benchmarks/bench_ml.py`` (``make bench``). Writes
benchmarks/results/ml.json."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.ml.datasets import make_dataset  # noqa: E402
from workbench.ml.models import build_model  # noqa: E402
from workbench.ml.predict import PredictionService  # noqa: E402
from workbench.ml.registry import Registry  # noqa: E402
from workbench.ml.train import train_model  # noqa: E402
from workbench.ml.trainer import TrainConfig, Trainer, set_seed  # noqa: E402
from workbench.types import candles_from_frame  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    c = candles_from_frame(
        pd.read_csv(ROOT / "data/sample/binance/BTCUSDT_1h.csv.gz"), timeframe="1h", source="sample"
    )
    c.attrs.update(exchange="binance", symbol="BTC/USDT", timeframe="1h")
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "training": {},
        "inference": {},
    }
    print(f"{'architecture':<8} {'window':>6} {'samples/s':>12} {'epochs':>6}")
    for arch, window in (("mlp", 1), ("gru", 32), ("lstm", 32), ("tcn", 32)):
        ds = make_dataset(c, horizon=24, window=window)
        X, y = ds.X, ds.y
        set_seed(0)
        model = build_model(arch, X.shape[-1])
        tr = Trainer(model, "bce", TrainConfig(epochs=3, patience=99, batch_size=256))
        h = tr.fit((X, y))
        results["training"][arch] = {"window": window, "samples_per_s": h.samples_per_s, "samples": h.samples}
        print(f"{arch:<8} {window:>6} {h.samples_per_s:>12,.0f} {3:>6}")
    with tempfile.TemporaryDirectory() as d:
        reg = Registry(d)
        out = train_model(c, arch="mlp", folds=2, epochs=5, registry=reg, promote=True)
        svc = PredictionService.from_registry(reg, out.name)
        start = len(c) - 500
        svc.update(c.iloc[start - svc.lookback : start])
        for i in range(start, len(c)):
            svc.update(c.iloc[i])
        e2e = np.array(svc.latency_s)[50:] * 1000
        model_only = np.array(svc.model_latency_s)[50:] * 1000
        t0 = time.perf_counter()
        b = svc.predict_batch(c)
        batch_ms = (time.perf_counter() - t0) * 1000
        results["inference"] = {
            "model": f"{out.name} {out.version}",
            "model_only_ms_median": float(np.median(model_only)),
            "model_only_ms_p99": float(np.percentile(model_only, 99)),
            "update_ms_median": float(np.median(e2e)),
            "update_ms_p99": float(np.percentile(e2e, 99)),
            "lookback_bars": svc.lookback,
            "batch_ms_per_bar": batch_ms / b.notna().sum(),
        }
    inf = results["inference"]
    print(f"\ninference, promoted {inf['model']}:")
    print(
        f"  model alone           median {inf['model_only_ms_median']:.3f} ms, p99 {inf['model_only_ms_p99']:.3f} ms (target <= 1 ms)"
    )
    print(
        f"  service update (bar)  median {inf['update_ms_median']:.2f} ms, p99 {inf['update_ms_p99']:.2f} ms "
        f"(features on {inf['lookback_bars']} bars + scaler + model)"
    )
    print(f"  batch                 {inf['batch_ms_per_bar'] * 1000:.1f} us per bar")
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ml.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
