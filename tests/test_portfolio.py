"""The portfolio: balances per currency, fees in the asset charged (quote, base, BNB), manual sub-positions,
equity identities over random fills, rebuild from a real journal's fills, reconciliation that never adopts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.trading.brokers.base import MarketRules
from workbench.trading.journal import Journal
from workbench.trading.portfolio import Portfolio
from workbench.types import Fill, Side


def _fill(
    tid: str, side: Side, amount: float, price: float, fee: float = 0.0, ccy: str = "USDT", **kw
) -> Fill:
    return Fill(
        client_order_id=kw.pop("cid", "c"),
        symbol=kw.pop("symbol", "BTC/USDT"),
        side=side,
        amount=amount,
        price=price,
        fee=fee,
        fee_currency=ccy,
        timestamp=kw.pop("ts", 1),
        trade_id=tid,
        **kw,
    )


def test_fees_in_quote_base_and_bnb() -> None:
    p = Portfolio("USDT", {"USDT": 10_000.0, "BNB": 1.0})
    assert p.apply(_fill("1", Side.BUY, 1.0, 100.0, 0.1, "USDT"))
    assert p.apply(_fill("2", Side.BUY, 1.0, 100.0, 0.001, "BTC"))
    assert p.apply(_fill("3", Side.SELL, 0.5, 110.0, 0.0002, "BNB"))
    assert p.balances["USDT"] == pytest.approx(10_000 - 100.1 - 100 + 55)
    assert p.balances["BTC"] == pytest.approx(2.0 - 0.001 - 0.5)
    assert p.balances["BNB"] == pytest.approx(1.0 - 0.0002)
    assert p.fees == {"USDT": 0.1, "BTC": 0.001, "BNB": 0.0002}
    assert p.base_fees == {"BTC/USDT": 0.001}
    assert p.position("BTC/USDT").amount == pytest.approx(1.499)
    prices = {"BTC/USDT": 120.0, "BNB/USDT": 500.0}
    # BNB fee valued at the price given
    assert p.fees_paid(prices) == pytest.approx(0.1 + 0.1 + 0.0002 * 500)
    with pytest.raises(ValueError, match="no price for BNB/USDT to value the fees paid in BNB"):
        p.fees_paid({"BTC/USDT": 120.0})
    # equity identity
    gain = p.equity(prices) - p.initial_equity(prices)
    assert gain == pytest.approx(p.realized_pnl + p.unrealized_pnl(prices) - p.fees_paid(prices))


def test_third_asset_fee_valued_at_the_fill_when_its_price_is_given() -> None:
    p = Portfolio("USDT", {"USDT": 1000.0})
    p.apply(_fill("1", Side.BUY, 1.0, 100.0, 0.001, "BNB"), fee_price=400.0)
    assert p.fees_paid() == pytest.approx(0.4)
    assert p.position("BTC/USDT").fees == pytest.approx(0.4)


def test_duplicate_fill_changes_nothing_and_wrong_quote_is_refused() -> None:
    p = Portfolio("USDT", {"USDT": 1000.0})
    f = _fill("1", Side.BUY, 1.0, 100.0, 0.1)
    assert p.apply(f) is True
    snap = p.to_dict()
    assert p.apply(f) is False
    assert p.to_dict() == snap
    with pytest.raises(ValueError, match="kept in USDT, not BTC"):
        p.apply(_fill("2", Side.BUY, 1.0, 0.05, symbol="ETH/BTC", ccy="BTC"))


def test_manual_orders_are_their_own_sub_position() -> None:
    p = Portfolio("USDT", {"USDT": 10_000.0})
    p.apply(_fill("1", Side.BUY, 2.0, 100.0, tag="strategy"))
    p.apply(_fill("2", Side.BUY, 1.0, 110.0, tag="manual"))
    p.apply(_fill("3", Side.SELL, 0.5, 120.0, tag="manual"))
    assert p.position("BTC/USDT", "strategy").amount == 2.0
    assert p.position("BTC/USDT", "manual").amount == 0.5
    assert p.position("BTC/USDT", "manual").realized_pnl == pytest.approx(5.0)
    total = p.position("BTC/USDT")
    assert total.amount == 2.5
    assert p.positions("manual") == {"BTC/USDT": p.position("BTC/USDT", "manual")}
    assert p.position("ETH/USDT").is_flat
    assert p.gross_exposure({"BTC/USDT": 100.0}) == pytest.approx(250.0)


def test_dust_left_by_base_fees() -> None:
    p = Portfolio("USDT", {"USDT": 1000.0})
    p.apply(_fill("1", Side.BUY, 0.01, 100.0, 0.00001, "BTC"))
    rules = MarketRules("BTC/USDT", amount_step=0.001, min_amount=0.001)
    assert p.balances["BTC"] == pytest.approx(0.00999)
    assert p.dust("BTC/USDT", rules) == pytest.approx(0.00099)
    p.apply(_fill("2", Side.SELL, 0.009, 100.0))
    assert p.dust("BTC/USDT", rules) == pytest.approx(0.00099)  # below the minimum: all of it


def test_equity_needs_a_price_for_every_balance() -> None:
    p = Portfolio("USDT", {"USDT": 100.0, "ETH": 1.0})
    with pytest.raises(ValueError, match="no price for ETH/USDT to value the ETH balance"):
        p.equity({})
    assert p.equity({"ETH/USDT": 50.0}) == 150.0


def test_reconcile_reports_differences_and_adopts_nothing() -> None:
    p = Portfolio("USDT", {"USDT": 1000.0})
    p.apply(_fill("1", Side.BUY, 1.0, 100.0, 0.001, "BTC"))
    before = p.to_dict()
    assert p.reconcile({"USDT": 900.0, "BTC": 0.999}) == []
    problems = p.reconcile({"USDT": 900.0, "BTC": 0.998, "ETH": 0.5}, tolerance={"BTC": 1e-4})
    assert len(problems) == 2
    assert problems[0].startswith("BTC: journal 0.999, venue 0.998")
    assert problems[1].startswith("ETH: journal 0, venue 0.5")
    assert p.to_dict() == before


def test_to_dict_from_dict_roundtrip() -> None:
    p = Portfolio("USDT", {"USDT": 1000.0})
    p.apply(_fill("1", Side.BUY, 1.0, 100.0, 0.001, "BTC", tag="manual"))
    p.apply(_fill("2", Side.BUY, 1.0, 100.0, 0.001, "BNB"))
    q = Portfolio.from_dict(p.to_dict())
    assert q == p
    assert q.apply(_fill("1", Side.BUY, 1.0, 100.0, 0.001, "BTC", tag="manual")) is False


def test_rebuild_from_a_journal_equals_the_live_portfolio(tmp_path: Path) -> None:
    live = Portfolio("USDT", {"USDT": 5000.0})
    with Journal(tmp_path / "j.sqlite") as j:
        for i, (side, amt, px, fee, ccy) in enumerate(
            [
                (Side.BUY, 1.0, 100.0, 0.1, "USDT"),
                (Side.BUY, 0.5, 90.0, 0.0005, "BTC"),
                (Side.SELL, 1.2, 110.0, 0.1, "USDT"),
            ]
        ):
            f = _fill(str(i), side, amt, px, fee, ccy, ts=i)
            assert j.record_fill(f)
            live.apply(f)
    with Journal(tmp_path / "j.sqlite", readonly=True) as r:
        rebuilt = Portfolio.from_fills("USDT", {"USDT": 5000.0}, r.fills())
    assert rebuilt == live


_seq = st.lists(
    st.tuples(
        st.sampled_from(["BTC/USDT", "ETH/USDT"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.floats(0.01, 3.0),
        st.floats(10.0, 500.0),
        st.sampled_from(["quote", "base", "BNB"]),
        st.sampled_from(["strategy", "manual"]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_seq, st.floats(10.0, 500.0), st.floats(10.0, 500.0), st.floats(100.0, 900.0))
def test_equity_change_is_pnl_less_fees(seq: list, btc: float, eth: float, bnb: float) -> None:
    p = Portfolio("USDT", {"USDT": 10_000.0, "BNB": 2.0})
    for i, (sym, side, amt, px, fee_kind, tag) in enumerate(seq):
        base = sym.split("/")[0]
        ccy, fee = {
            "quote": ("USDT", amt * px * 0.001),
            "base": (base, amt * 0.001),
            "BNB": ("BNB", amt * 0.0001),
        }[fee_kind]
        p.apply(_fill(str(i), side, amt, px, fee, ccy, symbol=sym, tag=tag))
    prices = {"BTC/USDT": btc, "ETH/USDT": eth, "BNB/USDT": bnb}
    gain = p.equity(prices) - p.initial_equity(prices)
    assert gain == pytest.approx(
        p.realized_pnl + p.unrealized_pnl(prices) - p.fees_paid(prices), rel=1e-9, abs=1e-6
    )
    for sym in ("BTC/USDT", "ETH/USDT"):
        parts = p.position(sym, "strategy").amount + p.position(sym, "manual").amount
        assert p.position(sym).amount == pytest.approx(parts, abs=1e-9)
        assert p.balances.get(sym.split("/")[0], 0.0) == pytest.approx(p.position(sym).amount, abs=1e-9)
