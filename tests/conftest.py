"""Shared fixtures: the bundled sample as ground truth, a loopback fake Binance, settings that point the
REAL ccxt client at it, and a temporary data folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

HERE = Path(__file__).parent
ROOT = HERE.parent
SAMPLE = ROOT / "data" / "sample"
sys.path.insert(0, str(HERE))

from fake_binance import FakeBinance  # noqa: E402

from workbench.config import Settings, load_settings  # noqa: E402
from workbench.data.store import Store  # noqa: E402

H = 3_600_000


def sample_candles(sym: str = "BTC", tf: str = "1h", n: int | None = None) -> pd.DataFrame:
    """The bundled sample's candles of ``sym``/USDT (the first ``n`` bars), validated, with the attributes a
    backtest reads (exchange, symbol, timeframe)."""
    from workbench.types import candles_from_frame

    df = pd.read_csv(SAMPLE / "binance" / f"{sym}USDT_{tf}.csv.gz")
    c = candles_from_frame(df if n is None else df.iloc[:n], timeframe=tf, source="sample")
    c.attrs.update(exchange="binance", symbol=f"{sym}/USDT", timeframe=tf)
    return c


@pytest.fixture(scope="session")
def btc_1h() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz")


@pytest.fixture(scope="session")
def eth_1h() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "binance" / "ETHUSDT_1h.csv.gz")


@pytest.fixture
def fake(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame):
    """Fake Binance serving the first 2,000 hours of the real BTC/ETH 1h sample; its clock is 1 day later."""
    btc, eth = btc_1h.iloc[:2000].reset_index(drop=True), eth_1h.iloc[:2000].reset_index(drop=True)
    f = FakeBinance(
        candles={("BTC/USDT", "1h"): btc, ("ETH/USDT", "1h"): eth},
        server_time_ms=int(btc["timestamp"].iloc[-1]) + 25 * H,
    )
    f.truth = {"BTC/USDT": btc, "ETH/USDT": eth}  # type: ignore[attr-defined]
    with f.start():
        yield f


def collect_section(**over: Any) -> dict[str, Any]:
    base = {
        "page_limit": 500,
        "max_retries": 4,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "commit_every_rows": 500,
        "progress": False,
    }
    return {**base, **over}


def write_config(
    folder: Path, fake: FakeBinance, data: Path, *, timeout_ms: int = 2000, **collect: Any
) -> Path:
    """A config folder (workbench.yml) pointing the real ccxt.binance at the fake; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "paths": {"data": str(data)},
        "exchanges": {"binance": {"ccxt": fake.ccxt_config(timeout_ms=timeout_ms)}},
        "collect": collect_section(**collect),
    }
    (folder / "workbench.yml").write_text(yaml.safe_dump(cfg))
    return folder


@pytest.fixture
def make_settings(tmp_path: Path):
    def make(fake: FakeBinance, *, timeout_ms: int = 2000, **collect: Any) -> Settings:
        cfg = write_config(tmp_path / "config", fake, tmp_path / "data", timeout_ms=timeout_ms, **collect)
        return load_settings(cfg, env={})

    return make


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


def as_truth(candles: pd.DataFrame) -> pd.DataFrame:
    """Stored Candles back into the sample's file layout, for exact comparison."""
    ts = candles.index.as_unit("ns").asi8 // 1_000_000
    out = candles.reset_index(drop=True)
    out.insert(0, "timestamp", ts)
    return out
