"""Market data: exchanges (ccxt), collection, the store, files, audit and the bundled sample.

The notebook-facing calls::

    from workbench.data import load_candles, open_store
    candles = load_candles("binance", "BTC/USDT", "1h", start="2024-03-01", end="2024-04-01")
"""

from __future__ import annotations

import os

import pandas as pd

from workbench.config import Settings, load_settings
from workbench.data.audit import audit, list_series
from workbench.data.candles import resample
from workbench.data.store import Store, StoreError, WriteResult

__all__ = [
    "Store",
    "StoreError",
    "audit",
    "collect_ohlcv",
    "list_series",
    "load_candles",
    "load_sample",
    "open_store",
    "resample",
]


def open_store(config: str | os.PathLike[str] | Settings | None = None) -> Store:
    """The store of the configured data folder (``WORKBENCH_HOME`` or ``paths.data``)."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    return Store.from_settings(settings)


def load_candles(
    exchange: str,
    symbol: str,
    timeframe: str,
    start: object = None,
    end: object = None,
    *,
    config: str | os.PathLike[str] | Settings | None = None,
) -> pd.DataFrame:
    """Validated Candles for ``[start, end)``: UTC DatetimeIndex of bar-open times, float64 OHLCV."""
    with open_store(config) as store:
        return store.candles(exchange, symbol, timeframe, start, end)


def load_sample(store: Store | None = None, *, config: str | os.PathLike[str] | Settings | None = None) -> list[WriteResult]:
    """Load the bundled sample (``paths.sample``, else the copy shipped with the package) into the store;
    idempotent."""
    from workbench.data.sample import load_sample as _load
    from workbench.data.sample import sample_dir

    settings = config if isinstance(config, Settings) else load_settings(config)
    return _load(store or Store.from_settings(settings), sample_dir(settings))


def collect_ohlcv(
    exchange: str,
    symbols: list[str] | str,
    timeframe: str,
    since: object = None,
    until: object = None,
    *,
    store: Store | None = None,
    config: str | os.PathLike[str] | Settings | None = None,
) -> list:
    """Collect closed candles from a ccxt exchange into the store (incremental, resumable); returns reports."""
    from workbench.data.collect import Collector
    from workbench.data.exchanges import make_exchange

    settings = config if isinstance(config, Settings) else load_settings(config)
    store = store or Store.from_settings(settings)
    collector = Collector(make_exchange(settings, exchange), store, settings.collect)
    return [collector.ohlcv(s, timeframe, since, until) for s in ([symbols] if isinstance(symbols, str) else symbols)]
