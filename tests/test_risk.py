"""The risk manager: each limit refused with a message naming it and the numbers; states ACTIVE / REDUCING /
HALTED; the kill switch on the mark that breaches; the UTC day roll; the orders-per-minute window; the stale feed;
the persisted state; and hypothesis property tests over >= 10,000 random sequences of orders, fills, cancels,
price moves, timers, operator commands and restarts, against an independent model written here."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from workbench.config import ConfigError, RiskConfig, load_settings
from workbench.trading.engine import split_amount
from workbench.trading.risk import (
    RiskDecision,
    RiskLimits,
    RiskManager,
    RiskState,
    RiskStateError,
    RiskView,
)
from workbench.types import Fill, Order, OrderStatus, OrderType, Side

ROOT = Path(__file__).resolve().parent.parent
DAY = 86_400_000
T0 = 1_717_282_800_000  # 2024-06-01T23:00:00Z: the first UTC day roll comes an hour in
BTC, ETH = "BTC/USDT", "ETH/USDT"
OPEN = (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)


def order(
    side: str = "buy",
    amount: float = 1.0,
    price: float | None = None,
    *,
    symbol: str = BTC,
    cid: str = "o1",
    reduce_only: bool = False,
    status: OrderStatus = OrderStatus.INITIALIZED,
    filled: float = 0.0,
) -> Order:
    return Order(
        client_order_id=cid,
        symbol=symbol,
        side=Side(side),
        type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        amount=amount,
        price=price,
        reduce_only=reduce_only,
        status=status,
        filled=filled,
    )


def view(
    equity: float = 10_000.0,
    positions: dict | None = None,
    prices: dict | None = None,
    open_orders: tuple = (),
    recent: tuple = (),
    now: int = T0,
) -> RiskView:
    return RiskView(
        now_ms=now,
        equity=equity,
        positions=positions or {},
        prices=prices or {BTC: 100.0, ETH: 10.0},
        open_orders=open_orders,
        recent_order_ms=recent,
    )


OFF = dict(  # every optional limit off, the others loose: one limit at a time is tightened below
    max_order_notional=None,
    price_band=None,
    min_amount=None,
    max_amount=None,
    max_position_fraction=1.0,
    max_gross_exposure=10.0,
    max_open_orders=None,
    max_orders_per_minute=None,
    daily_loss_limit=1.0,
    max_drawdown=1.0,
    stale_feed_s=None,
)


def loose(**kw) -> RiskLimits:
    return RiskLimits(**{**OFF, **kw})


# ------------------------------------------------------------------------------------------ each limit


@pytest.mark.parametrize(
    ("limits", "o", "v", "limit", "numbers"),
    [
        (loose(min_amount=0.5), order(amount=0.1), view(), "min_amount", ["0.1", "0.5"]),
        (loose(max_amount=2), order(amount=3), view(), "max_amount", ["3", "2"]),
        (
            loose(max_order_notional=1000),
            order(amount=11),
            view(),
            "max_order_notional",
            ["1100", "1000", "last 100"],
        ),
        (  # a limit buy above the last price is valued at its limit
            loose(max_order_notional=1000),
            order(amount=9.8, price=105.0),
            view(),
            "max_order_notional",
            ["1029", "1000", "limit 105"],
        ),
        (  # a sell limit below the last price at the last price
            loose(max_order_notional=1000),
            order("sell", amount=10.5, price=90.0),
            view(positions={BTC: 20.0}),
            "max_order_notional",
            ["1050", "1000"],
        ),
        (
            loose(price_band=0.05),
            order(amount=1, price=106.0),
            view(),
            "price_band",
            ["6.0000%", "5.0000%", "100"],
        ),
        (loose(price_band=0.05), order(amount=1, price=94.0), view(), "price_band", ["6.0000%", "94"]),
        (
            loose(max_open_orders=2),
            order(amount=1, price=100.0),
            view(
                open_orders=(
                    order(cid="a", status=OrderStatus.ACCEPTED),
                    order(cid="b", status=OrderStatus.SUBMITTED),
                )
            ),
            "max_open_orders",
            ["2 orders already open", "limit 2"],
        ),
        (
            loose(max_orders_per_minute=3),
            order(amount=1),
            view(recent=(T0 - 59_999, T0 - 30_000, T0)),
            "max_orders_per_minute",
            ["3 orders in the last 60 s", "limit 3"],
        ),
        (
            loose(max_position_fraction=0.25),
            order(amount=10),
            view(positions={BTC: 16.0}),
            "max_position_fraction",
            ["2600", "0.2600", "10000", "limit 0.25"],
        ),
        (  # an open buy counts into the worst-case position
            loose(max_position_fraction=0.25),
            order(amount=5, cid="new"),
            view(
                positions={BTC: 10.0},
                open_orders=(order(amount=11, price=100.0, cid="w", status=OrderStatus.ACCEPTED),),
            ),
            "max_position_fraction",
            ["2600", "0.2600"],
        ),
        (
            loose(max_gross_exposure=1.0),
            order(amount=30),
            view(positions={BTC: 40.0, ETH: 350.0}),
            "max_gross_exposure",
            ["10500", "1.0500", "limit 1"],
        ),
        (loose(), order(amount=1), view(equity=-5.0), "equity", ["-5.0"]),
        (loose(), order(amount=1, symbol="XRP/USDT"), view(), "price", ["XRP/USDT"]),
        (
            loose(),
            order(amount=1),
            view(positions={"SOL/USDT": 3.0}),
            "price",
            ["SOL/USDT", "gross exposure"],
        ),
        (
            loose(),
            order("sell", amount=1, reduce_only=True),
            view(),
            "reduce_only",
            ["reduce_only", "position 0"],
        ),
    ],
)
def test_each_limit_refuses_with_its_name_and_numbers(limits, o, v, limit, numbers) -> None:
    rm = RiskManager(limits)
    d = rm.check(o, v)
    assert not d and d.limit == limit, d
    assert d.reason.startswith(f"{limit}:"), d.reason
    for n in numbers:
        assert n in d.reason, (n, d.reason)
    assert o.client_order_id in d.reason
    e = d.event(o, T0, rm.state)
    assert e.event == "refused" and e.limit == limit and e.data["client_order_id"] == o.client_order_id
    assert json.loads(json.dumps(e.to_dict()))["reason"] == d.reason


@pytest.mark.parametrize(
    ("limits", "o", "v"),
    [
        (loose(min_amount=0.5), order(amount=0.5), view()),
        (loose(max_amount=2), order(amount=2), view()),
        (loose(max_order_notional=1000), order(amount=10), view()),
        (loose(price_band=0.05), order(amount=1, price=104.0), view()),
        (
            loose(max_open_orders=2),
            order(amount=1),
            view(
                open_orders=(
                    order(cid="a", status=OrderStatus.ACCEPTED),
                    order(cid="b", status=OrderStatus.CANCELED),
                )
            ),
        ),
        (loose(max_orders_per_minute=3), order(amount=1), view(recent=(T0 - 60_000, T0 - 30_000, T0))),
        (loose(max_position_fraction=0.25), order(amount=9), view(positions={BTC: 16.0})),
        (loose(max_gross_exposure=1.0), order(amount=20), view(positions={BTC: 40.0, ETH: 400.0})),
    ],
)
def test_at_the_limit_passes(limits, o, v) -> None:
    d = RiskManager(limits).check(o, v)
    assert d.ok and d == RiskDecision(True), d


def test_per_symbol_overrides_replace_the_account_limits() -> None:
    limits = loose(
        max_amount=100,
        max_order_notional=50_000,
        symbols={BTC: {"max_amount": 1.5, "max_position_fraction": 0.1}},
    )
    rm = RiskManager(limits)
    assert rm.check(order(amount=2), view()).limit == "max_amount"
    assert rm.check(order(amount=50, symbol=ETH), view()).ok
    d = rm.check(order(amount=1.2), view(equity=1000.0))
    assert d.limit == "max_position_fraction" and "limit 0.1" in d.reason
    with pytest.raises(ValidationError, match=r"symbols\.BTC/USDT: min_amount"):
        loose(max_amount=1.0, symbols={BTC: {"min_amount": 2.0}})


def test_reducing_orders_skip_the_exposure_limits_but_not_the_per_order_ones() -> None:
    rm = RiskManager(loose(max_position_fraction=0.1, max_gross_exposure=0.1, max_amount=30))
    v = view(positions={BTC: 50.0})  # 5000 of 10000: over both exposure limits
    assert rm.check(order(amount=1), v).limit == "max_position_fraction"
    assert rm.check(order("sell", amount=20), v).ok
    assert rm.check(order("sell", amount=40), v).limit == "max_amount"
    # two working sells of 30 + this one would flip the position: not reducing, so the limits apply
    w = order("sell", amount=30, price=100.0, cid="w1", status=OrderStatus.ACCEPTED)
    v2 = view(positions={BTC: 50.0}, open_orders=(w,))
    assert rm.is_reducing(order("sell", amount=20), v2)
    assert not rm.is_reducing(order("sell", amount=25), v2)
    assert rm.check(order("sell", amount=25), v2).limit == "max_position_fraction"


# ------------------------------------------------------------------------------------------ the states


def test_reducing_passes_only_reducing_orders_and_resume_leaves_it() -> None:
    rm = RiskManager(loose())
    [e] = rm.reduce("operator: reduce", ts_ms=T0)
    assert (e.event, e.previous, e.state) == ("reduce", RiskState.ACTIVE, RiskState.REDUCING)
    v = view(positions={BTC: 5.0})
    d = rm.check(order(amount=1), v)
    assert d.limit == "state" and "REDUCING" in d.reason and "operator: reduce" in d.reason
    assert rm.check(order("sell", amount=6), v).limit == "state"  # would flip to short
    assert rm.check(order("sell", amount=5), v).ok
    [e] = rm.resume(ts_ms=T0 + 1)
    assert e.state is RiskState.ACTIVE and rm.check(order(amount=1), v).ok


def test_halted_passes_only_flattening_and_only_clear_halt_leaves_it() -> None:
    rm = RiskManager(loose(max_open_orders=1, max_orders_per_minute=1, flatten_on_halt=True))
    [e] = rm.halt("operator: halt", ts_ms=T0)
    assert e.event == "halt" and e.is_state_change and rm.should_flatten
    v = view(
        positions={BTC: 5.0}, open_orders=(order(cid="x", status=OrderStatus.PENDING_CANCEL),), recent=(T0,)
    )
    assert rm.check(order("sell", amount=5), v).limit == "state"  # reducing but not reduce_only
    assert rm.check(order("buy", amount=1, reduce_only=True), v).limit == "state"
    assert rm.check(order("sell", amount=5, reduce_only=True), v).ok  # count limits do not hold up a flatten
    assert rm.halt("again") == [] and rm.reduce("and reduce") == []
    with pytest.raises(RiskStateError, match=r"HALTED .*operator: halt.*--clear-halt"):
        rm.resume()
    assert rm.state is RiskState.HALTED
    rm = RiskManager.from_dict(json.loads(json.dumps(rm.to_dict())), rm.limits)
    assert rm.state is RiskState.HALTED and rm.state_reason == "operator: halt"
    [e] = rm.clear_halt(ts_ms=T0 + 5)
    assert (e.event, e.previous, e.state) == ("resume", RiskState.HALTED, RiskState.ACTIVE)
    assert rm.clear_halt() == []


def test_drawdown_is_from_the_peak_and_halts_at_the_breaching_mark() -> None:
    rm = RiskManager(loose(max_drawdown=0.1, daily_loss_limit=1.0))
    assert rm.on_mark(T0, 10_000.0) == []
    assert rm.on_mark(T0 + 1, 12_000.0) == []  # new peak
    assert rm.on_mark(T0 + 2, 10_900.0) == []  # 9.17% below the peak (still 9% above the start)
    [e] = rm.on_mark(T0 + 3, 10_750.0)  # 10.42% below 12000: halts here, though above the start
    assert e.event == "halt" and e.limit == "max_drawdown" and e.ts_ms == T0 + 3
    assert "10.4167%" in e.reason and "12000" in e.reason and "10.0000%" in e.reason
    assert rm.state is RiskState.HALTED
    assert rm.on_mark(T0 + 4, 20_000.0) == [] and rm.state is RiskState.HALTED  # recovery does not clear it
    rm.clear_halt()
    assert rm.peak_equity == 20_000.0 and rm.on_mark(T0 + 5, 19_000.0) == []


def test_daily_loss_rolls_at_utc_midnight() -> None:
    rm = RiskManager(loose(daily_loss_limit=0.05))
    midnight = (T0 // DAY + 1) * DAY
    rm.on_mark(midnight - 3_600_000, 10_000.0)
    rm.on_mark(midnight - 1_000, 9_600.0)  # -4% on the first day
    assert rm.state is RiskState.ACTIVE
    # the new day starts from the last equity before midnight (9600): -4.17% today, not -6% since yesterday
    assert rm.on_mark(midnight, 9_200.0) == [] and rm.day_start_equity == 9_600.0
    assert rm.daily_loss == pytest.approx(1 - 9200 / 9600)
    [e] = rm.on_mark(midnight + 60_000, 9_110.0)  # -5.10% of 9600
    assert e.limit == "daily_loss_limit" and "9600" in e.reason and "5.1042%" in e.reason
    # and the same fall a day later is judged against that day's start
    rm2 = RiskManager(loose(daily_loss_limit=0.05))
    rm2.on_mark(midnight - 1_000, 10_000.0)
    rm2.on_mark(midnight + DAY - 1, 9_600.0)
    assert rm2.on_mark(midnight + DAY + 1, 9_200.0) == []
    # a clock that steps back does not roll the day back
    rm2.on_mark(midnight + 5, 9_200.0)
    assert rm2.day_start_equity == 9_600.0


def test_orders_per_minute_window_slides() -> None:
    rm = RiskManager(loose(max_orders_per_minute=2))
    sent = (T0, T0 + 10_000)
    assert rm.check(order(), view(recent=sent, now=T0 + 20_000)).limit == "max_orders_per_minute"
    assert rm.check(order(), view(recent=sent, now=T0 + 59_999)).limit == "max_orders_per_minute"
    assert rm.check(order(), view(recent=sent, now=T0 + 60_000)).ok  # the first left the window
    assert (
        rm.check(order(), view(recent=(*sent, T0 + 60_000), now=T0 + 60_000)).limit == "max_orders_per_minute"
    )
    assert rm.check(
        order(), view(recent=(T0 + 80_000,), now=T0 + 20_000)
    ).ok  # a future time is not in the window


def test_stale_feed_reduces_until_prices_resume() -> None:
    rm = RiskManager(loose(stale_feed_s=30))
    rm.watch_feed(BTC, T0)
    rm.watch_feed(ETH, T0)
    rm.on_mark(T0 + 20_000, 10_000.0, BTC)
    assert rm.on_timer(T0 + 30_000) == []
    # before the timer sees it, an order on the stale symbol already has to reduce
    d = rm.check(order(amount=1, symbol=ETH), view(now=T0 + 31_000))
    assert d.limit == "stale_feed_s" and "ETH/USDT" in d.reason and "31 s" in d.reason
    [e] = rm.on_timer(T0 + 31_000)
    assert (e.event, e.limit, e.state) == (
        "reduce",
        "stale_feed_s",
        RiskState.REDUCING,
    ) and "ETH/USDT" in e.reason
    assert rm.check(order(amount=1), view(now=T0 + 31_000)).limit == "state"
    [e] = rm.on_timer(T0 + 60_000)  # BTC too: reported, the state stays
    assert (e.event, e.state, e.data["symbol"], e.is_state_change) == (
        "stale_feed",
        RiskState.REDUCING,
        BTC,
        False,
    )
    assert rm.stale_feeds == {BTC, ETH} and rm.on_timer(T0 + 70_000) == []
    [e] = rm.on_mark(T0 + 61_000, 10_000.0, ETH)  # BTC still stale
    assert (e.event, e.state) == ("feed_resumed", RiskState.REDUCING)
    [e] = rm.on_mark(T0 + 62_000, 10_000.0, BTC)
    assert (e.event, e.state) == ("resume", RiskState.ACTIVE)
    # a person's REDUCING is not ended by the feed
    rm.reduce("operator")
    rm.on_timer(T0 + 100_000)
    rm.on_mark(T0 + 100_001, 10_000.0, BTC)
    rm.on_mark(T0 + 100_001, 10_000.0, ETH)
    assert rm.state is RiskState.REDUCING
    assert rm.resume()[0].state is RiskState.ACTIVE


def test_bad_equity_halts() -> None:
    for bad in (math.nan, math.inf, 0.0, -1.0):
        rm = RiskManager(loose())
        rm.on_mark(T0, 10_000.0)
        [e] = rm.on_mark(T0 + 1, bad)
        assert e.limit == "equity" and rm.state is RiskState.HALTED
        json.dumps(rm.to_dict(), allow_nan=False)  # nothing un-persistable was kept


def test_on_fill_reports_breaches_without_changing_the_state() -> None:
    rm = RiskManager(loose(max_position_fraction=0.25, max_gross_exposure=0.4))
    f = Fill("o1", BTC, Side.BUY, 1.0, 100.0, 0.1, "USDT", T0, "t1")
    assert rm.on_fill(f, view(positions={BTC: 20.0, ETH: 100.0})) == []
    events = rm.on_fill(f, view(positions={BTC: 30.0, ETH: 200.0}))
    assert [e.limit for e in events] == ["max_position_fraction", "max_gross_exposure"]
    assert all(e.event == "breach" and "t1" in e.reason for e in events)
    assert "0.3000" in events[0].reason and "0.5000" in events[1].reason
    assert rm.state is RiskState.ACTIVE


def test_persisted_state_round_trips_and_bad_state_is_refused() -> None:
    rm = RiskManager(loose(stale_feed_s=5))
    rm.watch_feed(BTC, T0)
    rm.on_mark(T0, 10_000.0, BTC)
    rm.on_mark(T0 + 1000, 12_000.0, BTC)
    rm.reduce("operator")
    rm.on_timer(T0 + 10_000)
    d = rm.to_dict()
    back = RiskManager.from_dict(json.loads(json.dumps(d)), rm.limits)
    assert back.to_dict() == d and back.peak_equity == 12_000.0 and back.state is RiskState.REDUCING
    for key, value, msg in [
        ("version", 2, "version 2 is not supported"),
        ("halted", "yes", "halted must be true or false"),
        ("peak_equity", "x", "peak_equity must be a number"),
        ("state", "ACTIVE", "does not match its flags"),
        ("feeds", {BTC: "soon"}, "feeds['BTC/USDT'] must be a time in ms"),
    ]:
        with pytest.raises(RiskStateError, match=re.escape(msg)):
            RiskManager.from_dict({**d, key: value}, rm.limits)
    missing = dict(d)
    del missing["peak_equity"]
    with pytest.raises(RiskStateError, match="key 'peak_equity' is missing"):
        RiskManager.from_dict(missing, rm.limits)
    halted = RiskManager(loose(), RiskState.HALTED, reason="restored from the journal")
    assert halted.state is RiskState.HALTED and halted.state_reason == "restored from the journal"


def test_config_defaults_and_validation(tmp_path) -> None:
    s = load_settings(ROOT / "config", env={})
    assert s.trading.risk == RiskConfig()  # trading.yml states every default
    assert set(RiskConfig.model_fields) <= set(
        (ROOT / "config" / "trading.yml").read_text().split("risk:", 1)[1].replace(":", " ").split()
    )
    d = tmp_path / "config"
    d.mkdir()
    (d / "workbench.yml").write_text("{}\n")
    (d / "trading.yml").write_text(
        "risk:\n  max_amount: 2\n  max_open_orders: 0\n  symbols:\n    BTC/USDT:\n      max_amout: 1\n"
    )
    with pytest.raises(ConfigError) as e:
        load_settings(d, env={})
    msg = str(e.value)
    assert "risk.max_open_orders: Input should be greater than or equal to 1" in msg
    assert (
        "risk.symbols.BTC/USDT.max_amout: unknown key (did you mean 'risk.symbols.BTC/USDT.max_amount'?)"
        in msg
    )
    (d / "trading.yml").write_text("risk:\n  min_amount: 3\n  max_amount: 2\n")
    with pytest.raises(ConfigError, match=r"min_amount \(3.0\) is above max_amount \(2.0\)"):
        load_settings(d, env={})
    (d / "trading.yml").write_text("risk:\n  max_amount: 2\n")
    s = load_settings(
        d,
        env={
            "WORKBENCH__TRADING__RISK__MAX_ORDER_NOTIONAL": "null",
            "WORKBENCH__TRADING__RISK__MIN_AMOUNT": "1",
        },
    )
    assert s.trading.risk.max_order_notional is None and s.trading.risk.min_amount == 1.0
    with pytest.raises(ConfigError, match=r"WORKBENCH__TRADING__RISK__MIN_AMOUNT.*above max_amount"):
        load_settings(d, env={"WORKBENCH__TRADING__RISK__MIN_AMOUNT": "3"})


# ------------------------------------------------------------------------------------- property tests
#
# A small engine around the risk manager (positions, cash, open orders, prices, a clock) that also states the
# rules of the risk manager on its own: which limits an order breaks (`violations`), and what the state must
# be after each event (`expect_*`). Every check of the manager is compared with it.

SYMS = (BTC, ETH)
START = {BTC: 100.0, ETH: 10.0}
FEE = 0.001
TOL = 1e-9
AMOUNT_FRACTIONS = (0.0004, 0.003, 0.02, 0.06, 0.12, 0.2, 0.3, 0.45, 0.7, 1.1)  # of equity at the last price
REDUCE_FRACTIONS = (0.25, 0.5, 1.0, 1.3)  # of |position|
LIMIT_OFFSETS = (-0.093, -0.041, -0.012, 0.0, 0.007, 0.026, 0.047, 0.071, 0.23)
PRICE_MOVES = (0.71, 0.83, 0.91, 0.962, 0.993, 1.004, 1.021, 1.052, 1.1, 1.16)
TIME_STEPS = (
    1_000,
    3_000,
    7_000,
    21_000,
    45_000,
    59_500,
    60_000,
    61_000,
    600_000,
    3 * 3_600_000,
    11 * 3_600_000,
)
FILL_FRACTIONS = (0.3, 0.5, 1.0)

LIMIT_SETS = (
    RiskLimits(
        max_order_notional=3000,
        price_band=0.05,
        min_amount=0.01,
        max_position_fraction=0.4,
        max_gross_exposure=0.7,
        max_open_orders=3,
        max_orders_per_minute=5,
        daily_loss_limit=0.08,
        max_drawdown=0.12,
        stale_feed_s=30,
        flatten_on_halt=True,
        symbols={
            BTC: {"max_amount": 25.0, "max_position_fraction": 0.5},
            ETH: {"max_amount": 300.0, "price_band": 0.03},
        },
    ),
    RiskLimits(
        **{
            **OFF,
            "max_position_fraction": 0.9,
            "max_gross_exposure": 1.5,
            "daily_loss_limit": 0.5,
            "max_drawdown": 0.15,
        }
    ),
    RiskLimits(
        max_order_notional=800,
        price_band=0.01,
        min_amount=0.05,
        max_amount=50,
        max_position_fraction=0.15,
        max_gross_exposure=0.25,
        max_open_orders=1,
        max_orders_per_minute=2,
        daily_loss_limit=0.03,
        max_drawdown=0.05,
        stale_feed_s=10,
        flatten_on_halt=True,
    ),
    RiskConfig(),  # the shipped defaults
)


class Model:
    def __init__(self, limits: RiskLimits) -> None:
        self.L = limits
        self.rm = RiskManager(limits)
        self.now = T0
        self.cash = 10_000.0
        self.pos = dict.fromkeys(SYMS, 0.0)
        self.px = dict(START)
        self.open: list[Order] = []
        self.sent: list[int] = []
        self.seq = 0
        self.stats: Counter = Counter()
        # the expected risk state
        self.halted = False
        self.manual = False
        self.stale: set[str] = set()
        self.feeds = dict.fromkeys(SYMS, T0)
        self.peak: float | None = None
        self.day: int | None = None
        self.start: float | None = None
        self.last: float | None = None
        for s in SYMS:
            self.rm.watch_feed(s, T0)
        for s in SYMS:
            self.price(s, 1.0)

    # ---------------------------------------------------------------------------- the model's rules

    def expected_state(self) -> RiskState:
        if self.halted:
            return RiskState.HALTED
        return RiskState.REDUCING if self.manual or self.stale else RiskState.ACTIVE

    def equity(self) -> float:
        return self.cash + sum(self.pos[s] * self.px[s] for s in SYMS)

    def lim(self, s: str, name: str):
        o = self.L.symbols.get(s)
        v = getattr(o, name) if o is not None else None
        return v if v is not None else getattr(self.L, name)

    def expect_mark(self, s: str, eq: float) -> None:
        self.feeds[s] = max(self.feeds[s], self.now)
        self.stale.discard(s)
        if not math.isfinite(eq) or eq <= 0:
            self.halted = True
            return
        day = self.now // DAY
        if self.day is None:
            self.day, self.start = day, eq
        elif day > self.day:
            self.day, self.start = day, self.last
        self.last = eq
        self.peak = eq if self.peak is None else max(self.peak, eq)
        if not self.halted:
            if (self.peak - eq) / self.peak > self.L.max_drawdown:
                self.halted = True
                self.stats["halt:max_drawdown"] += 1
            elif (self.start - eq) / self.start > self.L.daily_loss_limit:
                self.halted = True
                self.stats["halt:daily_loss_limit"] += 1

    def expect_timer(self) -> None:
        if self.L.stale_feed_s is not None:
            for s in SYMS:
                if s not in self.stale and self.now - self.feeds[s] > self.L.stale_feed_s * 1000:
                    self.stale.add(s)
                    self.stats["stale"] += 1

    def violations(self, o: Order, tol: float) -> set[str]:
        """The limits ``o`` breaks now; ``tol`` > 0 forgives that much, < 0 counts near misses."""
        out: set[str] = set()
        s = o.symbol
        others = [x for x in self.open if x.client_order_id != o.client_order_id]
        pos = self.pos[s]
        same = sum(max(x.amount - x.filled, 0.0) for x in others if x.symbol == s and x.side == o.side)
        reducing = (
            pos != 0 and (o.side is Side.SELL) == (pos > 0) and same + o.amount <= abs(pos) * (1 + 1e-9)
        )
        state = self.expected_state()
        if state is RiskState.HALTED and not (reducing and o.reduce_only):
            out.add("state")
        if state is RiskState.REDUCING and not reducing:
            out.add("state")
        if o.reduce_only and not reducing:
            out.add("reduce_only")

        def over(value: float, limit: float | None) -> bool:
            return limit is not None and value > limit * (1 + tol)

        px = self.px[s]
        lo = self.lim(s, "min_amount")
        if lo is not None and o.amount < lo * (1 - tol):
            out.add("min_amount")
        if over(o.amount, self.lim(s, "max_amount")):
            out.add("max_amount")
        is_limit = o.type is OrderType.LIMIT
        if over(o.amount * (max(o.price, px) if is_limit else px), self.lim(s, "max_order_notional")):
            out.add("max_order_notional")
        if is_limit and over(abs(o.price / px - 1.0), self.lim(s, "price_band")):
            out.add("price_band")
        if state is not RiskState.HALTED:
            if self.L.max_open_orders is not None and len(others) + 1 > self.L.max_open_orders:
                out.add("max_open_orders")
            recent = [t for t in self.sent if 0 <= self.now - t < 60_000]
            if self.L.max_orders_per_minute is not None and len(recent) + 1 > self.L.max_orders_per_minute:
                out.add("max_orders_per_minute")
        if reducing:
            return out
        if self.L.stale_feed_s is not None and self.now - self.feeds[s] > self.L.stale_feed_s * 1000:
            out.add("stale_feed_s")
        eq = self.equity()
        if eq <= 0:
            out.add("equity")
            return out
        worst = {}
        for sym in SYMS:
            buys = sum(
                max(x.amount - x.filled, 0.0) for x in others if x.symbol == sym and x.side is Side.BUY
            )
            sells = sum(
                max(x.amount - x.filled, 0.0) for x in others if x.symbol == sym and x.side is Side.SELL
            )
            if sym == s:
                buys, sells = (buys + o.amount, sells) if o.side is Side.BUY else (buys, sells + o.amount)
            worst[sym] = max(abs(self.pos[sym] + buys), abs(self.pos[sym] - sells)) * self.px[sym]
        if over(worst[s] / eq, self.lim(s, "max_position_fraction")):
            out.add("max_position_fraction")
        if over(sum(worst.values()) / eq, self.L.max_gross_exposure):
            out.add("max_gross_exposure")
        return out

    # ---------------------------------------------------------------------------------- the engine

    def view(self) -> RiskView:
        return RiskView(
            now_ms=self.now,
            equity=self.equity(),
            positions=dict(self.pos),
            prices=dict(self.px),
            open_orders=tuple(self.open),
            recent_order_ms=tuple(self.sent),
        )

    def after(self, before: RiskState, events: list) -> None:
        """The manager's state equals the model's, and the events returned tell the change at this event."""
        expected = self.expected_state()
        assert self.rm.state is expected, (self.rm.state, expected, self.rm.to_dict())
        assert (self.rm.peak_equity, self.rm.day_start_equity) == (self.peak, self.start)
        changes = [e for e in events if e.is_state_change]
        if before is expected:
            assert not changes, changes
        else:
            assert changes and changes[0].previous is before and changes[-1].state is expected, changes
            assert all(a.state is b.previous for a, b in itertools.pairwise(changes))
        if expected is RiskState.HALTED and before is not RiskState.HALTED:
            self.on_halt()

    def on_halt(self) -> None:
        """The engine's kill switch: cancel everything; flatten if configured (the checks must let it)."""
        self.open.clear()
        if not self.rm.should_flatten:
            return
        for s in SYMS:
            # the engine's split (TradingEngine.flatten): children within the per-order limits at the last price
            pos = self.pos[s]
            lo = self.rm.min_order_amount(s)
            if abs(pos) <= 1e-12 or abs(pos) < lo:
                continue
            kids = split_amount(abs(pos), self.rm.max_order_amount(s, self.px[s]), None, lo)
            assert math.isclose(math.fsum(kids), abs(pos), rel_tol=1e-12)
            for amount in kids:
                o = self.new_order(s, Side.SELL if pos > 0 else Side.BUY, amount, None, reduce_only=True)
                d = self.rm.check(o, self.view())
                assert d.ok, ("the kill switch could not flatten", d)
                assert not self.violations(o, TOL)
                self.stats["flatten"] += 1
                self.execute(o, amount, self.px[s])

    def new_order(
        self, s: str, side: Side, amount: float, price: float | None, reduce_only: bool = False
    ) -> Order:
        self.seq += 1
        return Order(
            client_order_id=f"c{self.seq}",
            symbol=s,
            side=side,
            type=OrderType.LIMIT if price is not None else OrderType.MARKET,
            amount=amount,
            price=price,
            reduce_only=reduce_only,
            created_ms=self.now,
        )

    def submit(self, o: Order) -> None:
        before = self.rm.state
        d = self.rm.check(o, self.view())
        self.stats["checks"] += 1
        if d.ok:
            broken = self.violations(o, TOL)
            assert not broken, (o, broken, self.view())
            self.stats["approved"] += 1
            self.sent.append(self.now)
            if o.type is OrderType.MARKET:
                self.execute(o, o.amount, self.px[o.symbol])
            else:
                self.open.append(o.with_status(OrderStatus.SUBMITTED).with_status(OrderStatus.ACCEPTED))
        else:
            near = self.violations(o, -TOL)
            assert d.limit in near, (d, near, o, self.view())
            assert d.reason.startswith(f"{d.limit}:") and o.client_order_id in d.reason
            self.stats[f"refused:{d.limit}"] += 1
        assert self.rm.state is before  # a check never changes the state

    def execute(self, o: Order, amount: float, price: float) -> None:
        self.seq += 1
        f = Fill(
            o.client_order_id,
            o.symbol,
            o.side,
            amount,
            price,
            amount * price * FEE,
            "USDT",
            self.now,
            f"t{self.seq}",
        )
        self.cash -= o.side.sign * amount * price + f.fee
        self.pos[o.symbol] += o.side.sign * amount
        before = self.rm.state
        events = self.rm.on_fill(f, self.view())
        eq = self.equity()
        got = {e.limit for e in events}
        assert all(e.event == "breach" for e in events) and self.rm.state is before
        if eq <= 0:
            assert got == {"equity"}
            return
        value = abs(self.pos[o.symbol]) * self.px[o.symbol]  # marked at the last price
        frac = self.lim(o.symbol, "max_position_fraction")
        gross = sum(abs(self.pos[s]) * self.px[s] for s in SYMS)
        for limit, v, lim_ in (
            ("max_position_fraction", value / eq, frac),
            ("max_gross_exposure", gross / eq, self.L.max_gross_exposure),
        ):
            if v > lim_ * (1 + TOL):
                assert limit in got, (limit, v, events)
            elif v < lim_ * (1 - TOL):
                assert limit not in got, (limit, v, events)

    def price(self, s: str, move: float) -> None:
        self.now += 500
        self.px[s] *= move
        before = self.rm.state
        eq = self.equity()
        events = self.rm.on_mark(self.now, eq, s)
        self.expect_mark(s, eq)
        self.after(before, events)

    def step(self, n: int) -> None:
        kind, r = n % 32, n // 32

        def pick(seq):
            nonlocal r
            r, i = divmod(r, len(seq))
            return seq[i]

        s = pick(SYMS)
        before = self.rm.state
        if kind <= 11:  # a new order
            side = pick((Side.BUY, Side.BUY, Side.BUY, Side.SELL))
            amount = pick(AMOUNT_FRACTIONS) * max(self.equity(), 100.0) / self.px[s]
            price = pick((None, *(self.px[s] * (1 + x) for x in LIMIT_OFFSETS)))
            self.submit(self.new_order(s, side, amount, price, reduce_only=pick((False,) * 7 + (True,))))
        elif kind <= 18 or kind >= 29:
            self.price(s, pick(PRICE_MOVES))
        elif kind in (19, 20) and self.open:  # a fill of a working order at its limit price
            o = self.open[r % len(self.open)]
            r //= len(self.open)
            amount = max(o.amount - o.filled, 0.0) * pick(FILL_FRACTIONS)
            if amount > 0:
                self.execute(o, amount, o.price)
                self.seq += 1
                f = Fill(
                    o.client_order_id,
                    o.symbol,
                    o.side,
                    amount,
                    o.price,
                    0.0,
                    "USDT",
                    self.now,
                    f"u{self.seq}",
                )
                new = o.with_fill(f)
                self.open = [x if x is not o else new for x in self.open if x is not o or new.status.is_open]
        elif kind == 21 and self.open:
            self.open.pop(r % len(self.open))
        elif kind in (22, 23):
            self.now += pick(TIME_STEPS)
        elif kind == 24:
            events = self.rm.on_timer(self.now)
            self.expect_timer()
            self.after(before, events)
        elif kind == 25:
            op = pick(("halt", "reduce", "resume", "resume", "clear_halt", "clear_halt"))
            if op == "halt":
                events = self.rm.halt("operator", ts_ms=self.now)
                self.halted = True
            elif op == "reduce":
                events = self.rm.reduce("operator", ts_ms=self.now)
                self.manual = True
            elif op == "resume" and self.halted:
                with pytest.raises(RiskStateError):
                    self.rm.resume(ts_ms=self.now)
                events = []
            elif op == "resume":
                events = self.rm.resume(ts_ms=self.now)
                self.manual = False
            else:
                events = self.rm.clear_halt(ts_ms=self.now)
                if self.halted:
                    self.halted = self.manual = False
                    if self.last is not None:
                        self.peak = self.start = self.last
            self.stats[f"op:{op}"] += 1
            self.after(before, events)
        elif kind == 26:  # restart: the state goes through JSON, as through the journal
            d = self.rm.to_dict()
            self.rm = RiskManager.from_dict(json.loads(json.dumps(d, allow_nan=False)), self.L)
            assert self.rm.to_dict() == d
            self.stats["restart"] += 1
            self.after(before, [])
        elif kind in (27, 28) and self.pos[s] != 0:  # against the position: a flatten, or a reduction
            pos = self.pos[s]
            amount = abs(pos) * pick(REDUCE_FRACTIONS)
            price = None if kind == 27 else pick((None, self.px[s] * 1.004, self.px[s] * 0.996))
            self.submit(
                self.new_order(s, Side.SELL if pos > 0 else Side.BUY, amount, price, reduce_only=kind == 27)
            )


N_SEQUENCES = 10_000
ALL_LIMITS = (
    "state", "reduce_only", "min_amount", "max_amount", "max_order_notional", "price_band", "max_open_orders",
    "max_orders_per_minute", "stale_feed_s", "max_position_fraction", "max_gross_exposure",
)  # fmt: skip


def test_no_approved_order_breaks_a_limit_over_10000_random_sequences() -> None:
    """>= 10,000 hypothesis sequences (8-60 events each: orders, fills, cancels, price moves, clock steps,
    timers, operator commands, restarts) under four sets of limits: every approval is checked against the
    model's own statement of the limits, every refusal names a limit the order breaks, and the state (with the
    events that report it, the kill switch at the breaching mark) equals the model's after every event."""
    seen: Counter = Counter()

    @settings(
        max_examples=N_SEQUENCES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.integers(0, len(LIMIT_SETS) - 1), st.lists(st.integers(0, 2**31 - 1), min_size=8, max_size=60))
    def run(which: int, steps: list[int]) -> None:
        m = Model(LIMIT_SETS[which])
        for n in steps:
            m.step(n)
        seen["sequences"] += 1
        seen.update(m.stats)

    run()
    assert seen["sequences"] >= N_SEQUENCES
    assert seen["checks"] >= 5 * N_SEQUENCES and seen["approved"] > seen["checks"] // 10, seen
    # not vacuous: every limit refused some order, both kill switches fired, feeds went stale, flattens passed
    missing = {f"refused:{x}" for x in ALL_LIMITS} - set(seen)
    assert not missing, (missing, seen)
    for key in ("halt:max_drawdown", "halt:daily_loss_limit", "stale", "flatten", "restart"):
        assert seen[key] > 0, (key, seen)


def test_the_random_sequences_reach_every_limit_and_state() -> None:
    """The sequences above are not vacuous: the same generator (seeded here) refuses by every limit, halts by
    drawdown and by the day's loss, goes stale, flattens, restarts."""
    seen: Counter = Counter()
    rng = random.Random(9)
    for i in range(600):
        m = Model(LIMIT_SETS[i % len(LIMIT_SETS)])
        for _ in range(rng.randint(8, 60)):
            m.step(rng.randrange(2**31))
        seen.update(m.stats)
    missing = {f"refused:{x}" for x in ALL_LIMITS} - set(seen)
    assert not missing, (missing, seen)
    for key in ("halt:max_drawdown", "halt:daily_loss_limit", "stale", "flatten", "restart", "approved"):
        assert seen[key] > 0, (key, seen)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.01, 0.5),
    st.lists(st.floats(0.8, 1.25), min_size=1, max_size=150),
)
def test_kill_switch_fires_at_the_first_mark_below_the_running_peak(limit: float, moves: list[float]) -> None:
    rm = RiskManager(loose(max_drawdown=limit))
    equity, peak, first = 10_000.0, 0.0, None
    for i, mv in enumerate(moves):
        equity *= mv
        peak = max(peak, equity)
        if first is None and (peak - equity) / peak > limit:
            first = i
        events = rm.on_mark(T0 + i * 1000, equity)
        if first is None:
            assert rm.state is RiskState.ACTIVE and events == []
        elif i == first:
            assert [(e.event, e.limit, e.ts_ms) for e in events] == [("halt", "max_drawdown", T0 + i * 1000)]
            assert rm.state is RiskState.HALTED
        else:
            assert rm.state is RiskState.HALTED and events == []


def test_flatten_split_children_are_within_the_limits_and_add_up_exactly() -> None:
    """TradingEngine.flatten's split: the fewest children within the cap, whole lot steps, as equal as the lot
    allows, the last the remainder (lifted to the minimum amount where the others can give), the sum exact."""
    from decimal import Decimal

    def dec(xs: list[float]) -> Decimal:
        return sum((Decimal(repr(x)) for x in xs), Decimal(0))

    rm = RiskManager(loose(max_order_notional=1000.0))
    cap = rm.max_order_amount("BTC/USDT", 62_345.67)
    assert cap * 62_345.67 <= 1000.0 and rm.max_order_amount("BTC/USDT", None) == 0.0
    total = 0.05448  # 3.4 x the limit at that price
    kids = split_amount(total, cap, 1e-5)
    assert len(kids) == 4 and dec(kids) == Decimal("0.05448") and max(kids) * 62_345.67 <= 1000.0
    assert kids[-1] <= kids[0] and all(Decimal(repr(k)) % Decimal("0.00001") == 0 for k in kids)
    assert split_amount(10, 3, 1) == [3, 3, 3, 1]
    assert split_amount(0.00007, 0.00003, 1e-5, min_amount=0.00002) == [2e-05, 3e-05, 2e-05]  # not 3, 3, 1
    assert split_amount(1.0, 5.0, 0.1) == [1.0] and split_amount(0.0, 1.0) == []
    assert split_amount(1.0, 1e-9, 0.1) == [1.0]  # one step is over the cap: one order, refused saying why
    nostep = split_amount(1.0, 0.3)
    assert len(nostep) == 4 and math.isclose(math.fsum(nostep), 1.0) and max(nostep) <= 0.3
