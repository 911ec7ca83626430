"""viz.trading_figure: fills on the price at their exact times and prices, the equity curve, the journal's
export lists taken as they are, and clear errors for malformed input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.viz import trading_figure

T0 = 1_709_510_400_000  # 2024-03-04 00:00 UTC
TF = 300_000


def _candles(n: int = 12) -> pd.DataFrame:
    idx = pd.date_range(pd.Timestamp(T0, unit="ms", tz="UTC"), periods=n, freq="5min", name="time")
    close = 60_000 + np.arange(n) * 10.0
    return pd.DataFrame(
        {"open": close - 5, "high": close + 20, "low": close - 20, "close": close, "volume": 1.0}, index=idx
    )


FILLS = [  # as Journal.export()["fills"] gives them
    {"timestamp": T0 + 2 * TF, "client_order_id": "a-1", "symbol": "BTC/USDT", "side": "buy", "amount": 0.03,
     "price": 60_020.5, "fee": 1.8, "fee_currency": "USDT"},
    {"timestamp": T0 + 7 * TF, "client_order_id": "a-2", "symbol": "BTC/USDT", "side": "sell", "amount": 0.03,
     "price": 60_070.0, "fee": 1.8, "fee_currency": "USDT"},
    {"timestamp": T0 + 8 * TF, "client_order_id": "b-1", "symbol": "ETH/USDT", "side": "buy", "amount": 1.0,
     "price": 3_400.0, "fee": 3.4, "fee_currency": "USDT"},
]  # fmt: skip
EQUITY = [{"timestamp": T0 + i * TF, "equity": 10_000 + i, "cash": 10_000.0} for i in range(12)][::-1]


def _trace(fig, name_start: str):
    found = [t for t in fig.data if (t.name or "").startswith(name_start)]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def test_fills_sit_at_their_times_and_prices_and_the_equity_is_in_time_order() -> None:
    fig = trading_figure({"BTC/USDT": _candles()}, FILLS, EQUITY)
    price = _trace(fig, "price")
    assert price.type == "candlestick" and len(price.x) == 12
    buy, sell = _trace(fig, "buy"), _trace(fig, "sell")
    # only BTC/USDT fills on the BTC/USDT chart
    assert buy.name == "buy (1)" and sell.name == "sell (1)"
    assert list(buy.y) == [60_020.5] and list(sell.y) == [60_070.0]
    assert pd.Timestamp(buy.x[0]) == pd.Timestamp(T0 + 2 * TF, unit="ms")
    assert pd.Timestamp(sell.x[0]) == pd.Timestamp(T0 + 7 * TF, unit="ms")
    assert buy.marker.symbol == "triangle-up" and sell.marker.symbol == "triangle-down"
    assert "a-1" in buy.hovertext[0] and "fee 1.8 USDT" in buy.hovertext[0]
    eq = _trace(fig, "equity")
    assert list(eq.y) == [10_000 + i for i in range(12)]  # sorted by time although given newest first
    assert eq.xaxis == "x2" and buy.xaxis == "x"


def test_frames_and_series_work_too_and_an_empty_session_draws() -> None:
    fills = pd.DataFrame(FILLS[:2])
    fills["time"] = pd.to_datetime(fills.pop("timestamp"), unit="ms", utc=True)
    equity = pd.Series([1.0, 2.0], index=_candles(2).index, name="equity")
    fig = trading_figure(_candles(), fills, equity, title="t")
    assert len(_trace(fig, "buy").y) == 1 and list(_trace(fig, "equity").y) == [1.0, 2.0]
    fig = trading_figure(_candles(), [], None)
    assert [t.name for t in fig.data] == ["price"]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"fills: missing column.*price"):
        trading_figure(_candles(), [{"timestamp": T0, "side": "buy", "amount": 1}], None)
    with pytest.raises(ValueError, match="side must be buy or sell, got long"):
        trading_figure(_candles(), [{**FILLS[0], "side": "long"}], None)
    with pytest.raises(ValueError, match=r"candles: missing column.*close"):
        trading_figure(_candles().drop(columns="close"), [], None)
    with pytest.raises(ValueError, match="no symbol 'XRP/USDT'"):
        trading_figure({"BTC/USDT": _candles()}, [], None, symbol="XRP/USDT")
    with pytest.raises(ValueError, match="candles: empty"):
        trading_figure(_candles().iloc[:0], [], None)
    with pytest.raises(ValueError, match="equity: no times"):
        trading_figure(_candles(), [], pd.DataFrame({"equity": [1.0]}))
