"""The trading records of workbench.types: the order state table, Order.with_fill, Fill validation and the
Position arithmetic (checked against plain cash accounting over random fill sequences)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.types import (
    ORDER_TRANSITIONS,
    Fill,
    Order,
    OrderStateError,
    OrderStatus,
    OrderType,
    Position,
    Side,
)

S = OrderStatus


def _order(**kw) -> Order:
    base = dict(
        client_order_id="c", symbol="BTC/USDT", side=Side.BUY, type=OrderType.LIMIT, amount=1.0, price=100.0
    )
    return Order(**{**base, **kw})


def _fill(amount: float = 0.4, price: float = 100.0, **kw) -> Fill:
    base = dict(
        client_order_id="c",
        symbol="BTC/USDT",
        side=Side.BUY,
        amount=amount,
        price=price,
        fee=0.0,
        fee_currency="USDT",
        timestamp=5,
        trade_id="t",
    )
    return Fill(**{**base, **kw})


def test_state_table_terminal_and_open() -> None:
    assert set(ORDER_TRANSITIONS) == set(S)
    for s in (S.DENIED, S.REJECTED, S.FILLED):
        assert ORDER_TRANSITIONS[s] == frozenset() and s.is_terminal
    assert {s for s in S if s.is_open} == {S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL}
    o = _order()
    with pytest.raises(OrderStateError, match="INITIALIZED -> ACCEPTED"):
        o.with_status(S.ACCEPTED)
    o = o.with_status(S.SUBMITTED, ts_ms=3)
    assert o.updated_ms == 3
    o = o.with_status(S.ACCEPTED).with_status(S.PENDING_CANCEL).with_status(S.CANCELED, reason="user")
    assert o.reason == "user"
    with pytest.raises(OrderStateError):
        o.with_status(S.ACCEPTED)


def test_with_fill_partial_full_and_late_fill_after_cancel() -> None:
    o = _order().with_status(S.SUBMITTED).with_status(S.ACCEPTED)
    o = o.with_fill(_fill(0.4, 100.0, trade_id="1"))
    assert o.status is S.PARTIALLY_FILLED and o.filled == 0.4 and o.remaining == pytest.approx(0.6)
    o = o.with_status(S.PENDING_CANCEL).with_status(S.CANCELED)
    late = o.with_fill(_fill(0.2, 101.0, trade_id="2"))
    assert late.status is S.CANCELED and late.filled == pytest.approx(0.6)
    assert late.avg_price == pytest.approx((0.4 * 100 + 0.2 * 101) / 0.6)
    full = late.with_fill(_fill(0.4, 102.0, trade_id="3"))
    assert full.status is S.FILLED and full.filled == 1.0
    with pytest.raises(OrderStateError, match="exceed"):
        full.with_fill(_fill(0.1, trade_id="4"))
    with pytest.raises(OrderStateError, match="not possible"):
        _order().with_fill(_fill())  # INITIALIZED: never sent, cannot fill


def test_with_fill_refuses_a_fill_of_another_order_side_or_symbol() -> None:
    o = _order().with_status(S.SUBMITTED)
    with pytest.raises(ValueError, match="belongs to x"):
        o.with_fill(_fill(client_order_id="x"))
    with pytest.raises(ValueError, match="does not match"):
        o.with_fill(_fill(side=Side.SELL))
    with pytest.raises(ValueError, match="does not match"):
        o.with_fill(_fill(symbol="ETH/USDT"))


def test_with_fill_on_an_order_restored_without_average_price() -> None:
    # a venue's view can say filled without an average price; the next fill must not crash
    o = _order(status=S.PARTIALLY_FILLED, filled=0.5, avg_price=None)
    after = o.with_fill(_fill(0.5, 100.0))
    assert after.status is S.FILLED and after.avg_price == 100.0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"amount": 0.0}, "amount must be positive"),
        ({"amount": -1.0}, "amount must be positive"),
        ({"amount": float("nan")}, "amount must be positive"),
        ({"price": 0.0}, "price must be positive"),
        ({"price": float("inf")}, "price must be positive"),
        ({"fee": float("nan")}, "fee must be a finite"),
    ],
)
def test_fill_validation(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _fill(**kw)


def test_fill_with_a_rebate_is_valid() -> None:
    assert _fill(fee=-0.01).fee == -0.01


def test_order_validation() -> None:
    with pytest.raises(ValueError, match="amount must be positive"):
        _order(amount=0)
    with pytest.raises(ValueError, match="limit order needs a positive price"):
        _order(price=None)


def test_position_base_fee_keeps_dust_and_adds_on_held_amount() -> None:
    p = Position("BTC/USDT")
    p = p.apply(_fill(1.0, 100.0, fee=0.001, fee_currency="BTC", trade_id="1"))
    assert p.amount == pytest.approx(0.999) and p.avg_price == 100.0 and p.fees == pytest.approx(0.1)
    p = p.apply(_fill(1.0, 200.0, fee=0.001, fee_currency="BTC", trade_id="2"))
    # average over what is held: 0.999 at 100 and 0.999 at 200
    assert p.avg_price == pytest.approx(150.0)
    assert p.amount == pytest.approx(1.998)


def test_position_fee_in_a_third_asset_needs_its_value() -> None:
    f = _fill(1.0, 100.0, fee=0.0005, fee_currency="BNB")
    with pytest.raises(ValueError, match=r"charged in BNB.*fee_quote"):
        Position("BTC/USDT").apply(f)
    p = Position("BTC/USDT").apply(f, fee_quote=0.15)
    assert p.fees == 0.15 and p.amount == 1.0


_fills = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.floats(0.01, 5.0),
        st.floats(10.0, 1000.0),
        st.sampled_from(["USDT", "BTC"]),
        st.floats(0.0, 0.002),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(_fills, st.floats(10.0, 1000.0))
def test_position_pnl_equals_cash_accounting(seq: list, mark: float) -> None:
    """realized + unrealized - fees == the change in value (cash + held x mark), for any fills, flips included."""
    p = Position("BTC/USDT")
    cash = 0.0
    held = 0.0
    for i, (side, amount, price, fee_ccy, rate) in enumerate(seq):
        fee = amount * rate * (price if fee_ccy == "USDT" else 1.0)
        f = _fill(amount, price, side=side, fee=fee, fee_currency=fee_ccy, trade_id=str(i))
        p = p.apply(f)
        cash -= side.sign * amount * price + (fee if fee_ccy == "USDT" else 0.0)
        held += side.sign * amount - (fee if fee_ccy == "BTC" else 0.0)
    assert p.amount == pytest.approx(held, abs=1e-9)
    value = cash + held * mark
    assert p.realized_pnl + p.unrealized_pnl(mark) - p.fees == pytest.approx(value, rel=1e-9, abs=1e-6)
