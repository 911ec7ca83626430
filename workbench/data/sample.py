"""The bundled sample: real Binance spot data shipped in ``data/sample`` (see its README for provenance).

``manifest.csv`` lists each file with its kind, exchange, symbol, timeframe and sha256; loading verifies
the hash first, so a corrupted or truncated sample is reported by name instead of half-loaded.

The sample ships with the package (:mod:`workbench.resources`): with the default ``paths.sample``
(``data/sample``) and no sample in the project, :func:`sample_dir` finds the installed copy, so
``workbench init --sample`` works from any folder. A ``paths.sample`` set to anything else must exist.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.config import Settings
from workbench.data.files import import_candles
from workbench.data.store import Store, WriteResult
from workbench.resources import bundled

__all__ = ["SampleError", "SampleFile", "load_sample", "sample_dir", "sample_files"]

DEFAULT_SAMPLE = "data/sample"


class SampleError(RuntimeError):
    pass


@dataclass(frozen=True)
class SampleFile:
    path: Path
    kind: str
    exchange: str
    symbol: str
    timeframe: str | None
    sha256: str


def sample_dir(settings: Settings) -> Path:
    """The sample folder: ``paths.sample``; for the default value, the copy shipped with the package when
    the project holds none."""
    configured = settings.sample_dir
    if (configured / "manifest.csv").is_file() or Path(settings.paths.sample) != Path(DEFAULT_SAMPLE):
        return configured
    return bundled(DEFAULT_SAMPLE) or configured


def sample_files(sample_dir: str | os.PathLike[str]) -> list[SampleFile]:
    root = Path(sample_dir)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise SampleError(
            f"{manifest}: sample manifest not found (paths.sample; this installation ships no sample)"
        )
    with manifest.open(newline="") as f:
        return [
            SampleFile(root / r["file"], r["kind"], r["exchange"], r["symbol"], r["timeframe"] or None, r["sha256"])
            for r in csv.DictReader(f)
        ]


def _verify(f: SampleFile) -> None:
    if not f.path.is_file():
        raise SampleError(f"{f.path}: sample file missing")
    h = hashlib.sha256(f.path.read_bytes()).hexdigest()
    if h != f.sha256:
        raise SampleError(f"{f.path}: sha256 {h} does not match the manifest ({f.sha256}): file is corrupt")


def load_sample(
    store: Store, sample_dir: str | os.PathLike[str], *, kinds: tuple[str, ...] | None = None
) -> list[WriteResult]:
    """Verify and load every sample file into the store (idempotent: a second load adds nothing)."""
    files = [f for f in sample_files(sample_dir) if kinds is None or f.kind in kinds]
    for f in files:
        _verify(f)
    results = []
    for f in files:
        if f.kind == "candles":
            results.append(import_candles(store, f.path, f.exchange, f.symbol, f.timeframe or ""))
        elif f.kind == "trades":
            df = pd.read_csv(f.path)
            trades = pd.DataFrame(
                {
                    "ts": df["trade_ts_ms"].astype("int64"),
                    "id": df["trade_id"].astype(str),
                    "price": df["price"].astype("float64"),
                    "amount": df["qty"].astype("float64"),
                    # the buyer was the maker, so the taker (the aggressor) sold
                    "side": df["is_buyer_maker"].map({True: "sell", False: "buy"}),
                }
            )
            results.append(store.write(store.key("trades", f.exchange, f.symbol), trades, source=str(f.path)))
        elif f.kind == "orderbook":
            df = pd.read_csv(f.path)
            book = pd.DataFrame(
                {
                    # recorder's clock (about 1.27 s behind the exchange's); the snapshot carries no exchange time
                    "ts": (df["local_ts_ns"] // 1_000_000).astype("int64"),
                    "side": df["side"].astype(str),
                    "level": df["level"].astype("int32"),
                    "price": df["price"].astype("float64"),
                    "amount": df["qty"].astype("float64"),
                }
            )
            results.append(store.write(store.key("orderbook", f.exchange, f.symbol), book, source=str(f.path)))
        else:
            raise SampleError(f"{f.path}: unknown kind {f.kind!r} in the sample manifest")
    return results
