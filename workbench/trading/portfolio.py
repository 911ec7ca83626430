"""The session's portfolio: positions, cash balances per currency, fees, PnL and equity; changed only by fills.

Choices (after nautilus_trader's and freqtrade's accounting, for spot):

- One quote currency per portfolio (``quote``, e.g. USDT); a fill in a symbol quoted in another currency is
  refused. Balances are kept per currency: a fill moves the base (+/- amount), the quote (-/+ amount x price) and
  the fee in the asset the venue charged it in: the quote, the base (the venue keeps it out of what it delivers,
  which leaves base *dust*), or a third asset such as BNB.
- Positions are kept per ``(symbol, tag)``: the strategy's (``"strategy"``) and the manual orders' (``"manual"``)
  are separate sub-positions, so that the strategy's next target never undoes a manual trade; ``position(symbol)``
  is their total (all fills of the symbol applied in order), which is what the risk limits look at.
- Position arithmetic is :meth:`workbench.types.Position.apply` (average price, realised PnL, fees in quote). A
  fee in the quote or the base is valued when it is charged (the base fee at the fill price); a third-asset fee is
  valued with ``fee_price`` when one is passed to :meth:`Portfolio.apply`, otherwise it is kept in its own
  currency and valued at the prices given to :meth:`Portfolio.fees_paid`. With the fees so valued,
  ``equity(prices) - initial equity = realized_pnl + unrealized_pnl(prices) - fees_paid(prices)``.
- A fill is applied once (by symbol and trade id); a repeat returns ``False`` and changes nothing.
- The venue's balances are a reconciliation check (:meth:`Portfolio.reconcile`): differences are reported, never
  adopted. :meth:`Portfolio.from_fills` rebuilds the portfolio after a restart from the journal's fills.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from workbench.types import Fill, Position

__all__ = ["Portfolio"]

_EPS = 1e-12


class _LotRules(Protocol):
    min_amount: float

    def round_amount(self, amount: float) -> float: ...


def _split(symbol: str) -> tuple[str, str]:
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"{symbol!r} is not a ccxt spot symbol (BASE/QUOTE)")
    return base, quote.split(":", 1)[0]


class Portfolio:
    """Positions and balances of one session (see the module docstring)."""

    def __init__(self, quote: str, balances: Mapping[str, float] | None = None) -> None:
        self.quote = quote
        self.initial_balances: dict[str, float] = {k: float(v) for k, v in (balances or {}).items()}
        self.balances: dict[str, float] = dict(self.initial_balances)
        self._positions: dict[tuple[str, str], Position] = {}
        self._totals: dict[str, Position] = {}
        self.fees: dict[str, float] = {}
        """Fees charged, per currency, in that currency."""
        self.base_fees: dict[str, float] = {}
        """Base kept back as fees, per symbol (what makes base dust)."""
        self._fees_valued = 0.0
        self._fees_unvalued: dict[str, float] = {}
        self._seen: set[str] = set()
        self.last_fill_ts: int | None = None

    # ---------------------------------------------------------------------------------------- changes

    def apply(self, fill: Fill, fee_price: float | None = None) -> bool:
        """Apply ``fill``; ``False`` (and no change) when it was applied before. ``fee_price``: the price in
        quote of a third-asset fee currency (BNB) at the fill, if known."""
        base, quote = _split(fill.symbol)
        if quote != self.quote:
            raise ValueError(
                f"fill {fill.trade_id} in {fill.symbol}: this portfolio is kept in {self.quote}, not {quote}"
            )
        key = f"{fill.symbol}|{fill.trade_id}"
        if key in self._seen:
            return False
        fee_quote: float | None = None
        third = fill.fee_currency not in (base, quote) and fill.fee != 0.0
        if third:
            if fee_price is not None:
                fee_quote = fill.fee * fee_price
                self._fees_valued += fee_quote
            else:
                fee_quote = 0.0  # valued later, at the prices given to fees_paid()
                self._fees_unvalued[fill.fee_currency] = (
                    self._fees_unvalued.get(fill.fee_currency, 0.0) + fill.fee
                )
        elif fill.fee_currency == base:
            self._fees_valued += fill.fee * fill.price
            self.base_fees[fill.symbol] = self.base_fees.get(fill.symbol, 0.0) + fill.fee
        else:
            self._fees_valued += fill.fee
        pk = (fill.symbol, fill.tag)
        self._positions[pk] = self._positions.get(pk, Position(fill.symbol)).apply(fill, fee_quote)
        self._totals[fill.symbol] = self._totals.get(fill.symbol, Position(fill.symbol)).apply(
            fill, fee_quote
        )
        d = fill.signed_amount
        self._add(base, d)
        self._add(quote, -d * fill.price)
        if fill.fee:
            self._add(fill.fee_currency, -fill.fee)
            self.fees[fill.fee_currency] = self.fees.get(fill.fee_currency, 0.0) + fill.fee
        self._seen.add(key)
        self.last_fill_ts = (
            fill.timestamp if self.last_fill_ts is None else max(self.last_fill_ts, fill.timestamp)
        )
        return True

    def _add(self, currency: str, amount: float) -> None:
        self.balances[currency] = self.balances.get(currency, 0.0) + amount

    @classmethod
    def from_fills(
        cls,
        quote: str,
        initial_balances: Mapping[str, float] | None,
        fills: Iterable[Fill],
        fee_prices: Mapping[str, float] | None = None,
    ) -> Portfolio:
        """The portfolio after ``fills`` (in journal order) from ``initial_balances``: a restart's rebuild.
        ``fee_prices``: trade id -> price of a third-asset fee currency, where one was recorded."""
        p = cls(quote, initial_balances)
        for f in fills:
            p.apply(f, (fee_prices or {}).get(f.trade_id))
        return p

    # ------------------------------------------------------------------------------------------ views

    def position(self, symbol: str, tag: str | None = None) -> Position:
        """The position in ``symbol`` of one ``tag`` (``"strategy"``, ``"manual"``), or the total (``None``)."""
        if tag is None:
            return self._totals.get(symbol, Position(symbol))
        return self._positions.get((symbol, tag), Position(symbol))

    def positions(self, tag: str | None = None) -> dict[str, Position]:
        """Non-flat positions by symbol (of one tag, or totals)."""
        src = (
            self._totals.items()
            if tag is None
            else ((s, p) for (s, t), p in self._positions.items() if t == tag)
        )
        return {s: p for s, p in src if abs(p.amount) > _EPS}

    @property
    def symbols(self) -> list[str]:
        return list(self._totals)

    def _price(self, prices: Mapping[str, float], currency: str, what: str) -> float:
        sym = f"{currency}/{self.quote}"
        px = prices.get(sym)
        if px is None or not math.isfinite(px) or px <= 0:
            raise ValueError(f"no price for {sym} to value {what} (prices given: {sorted(prices) or 'none'})")
        return float(px)

    def equity(self, prices: Mapping[str, float]) -> float:
        """Every balance valued in quote at ``prices`` (symbol -> price; ``BTC/USDT`` values the BTC)."""
        total = 0.0
        for ccy, amount in self.balances.items():
            if ccy == self.quote:
                total += amount
            elif abs(amount) > _EPS:
                total += amount * self._price(prices, ccy, f"the {ccy} balance")
        return total

    def initial_equity(self, prices: Mapping[str, float]) -> float:
        total = 0.0
        for ccy, amount in self.initial_balances.items():
            if ccy == self.quote:
                total += amount
            elif abs(amount) > _EPS:
                total += amount * self._price(prices, ccy, f"the initial {ccy} balance")
        return total

    def gross_exposure(self, prices: Mapping[str, float]) -> float:
        """Sum of |position| x price over symbols, in quote (divide by equity for the fraction)."""
        return sum(
            abs(p.amount) * self._price(prices, _split(s)[0], f"the {s} position")
            for s, p in self._totals.items()
            if abs(p.amount) > _EPS
        )

    @property
    def realized_pnl(self) -> float:
        return sum(p.realized_pnl for p in self._totals.values())

    def unrealized_pnl(self, prices: Mapping[str, float]) -> float:
        return sum(
            p.unrealized_pnl(self._price(prices, _split(s)[0], f"the {s} position"))
            for s, p in self._totals.items()
            if abs(p.amount) > _EPS
        )

    def fees_paid(self, prices: Mapping[str, float] | None = None) -> float:
        """All fees in quote: quote and base fees as charged, a third-asset fee with the price passed at the fill
        or, failing that, at ``prices`` (an error names the missing price)."""
        total = self._fees_valued
        for ccy, amount in self._fees_unvalued.items():
            total += amount * self._price(prices or {}, ccy, f"the fees paid in {ccy}")
        return total

    def dust(self, symbol: str, rules: _LotRules) -> float:
        """The part of the held base of ``symbol`` that cannot be sold under the market's ``rules`` (below the
        lot step, or all of it when below the minimum amount)."""
        held = max(self.balances.get(_split(symbol)[0], 0.0), 0.0)
        tradable = rules.round_amount(held)
        if tradable < rules.min_amount:
            tradable = 0.0
        return held - tradable

    def reconcile(
        self, venue_balances: Mapping[str, float], tolerance: float | Mapping[str, float] = 1e-8
    ) -> list[str]:
        """Differences between the venue's balances and this portfolio's, one line per currency; nothing is
        adopted. ``tolerance``: absolute, one for all currencies or per currency (missing ones: 1e-8)."""
        problems = []
        for ccy in sorted(set(self.balances) | set(venue_balances)):
            ours = self.balances.get(ccy, 0.0)
            theirs = float(venue_balances.get(ccy, 0.0))
            tol = tolerance.get(ccy, 1e-8) if isinstance(tolerance, Mapping) else tolerance
            if abs(ours - theirs) > tol:
                problems.append(
                    f"{ccy}: journal {ours:.10g}, venue {theirs:.10g} (venue - journal = {theirs - ours:+.10g}, "
                    f"tolerance {tol:g})"
                )
        return problems

    # ---------------------------------------------------------------------------------------- persist

    def to_dict(self) -> dict[str, Any]:
        def pos(p: Position) -> dict[str, Any]:
            return {
                "symbol": p.symbol,
                "amount": p.amount,
                "avg_price": p.avg_price,
                "realized_pnl": p.realized_pnl,
                "fees": p.fees,
            }

        return {
            "quote": self.quote,
            "initial_balances": dict(self.initial_balances),
            "balances": dict(self.balances),
            "positions": [{"tag": t, **pos(p)} for (_, t), p in self._positions.items()],
            "totals": [pos(p) for p in self._totals.values()],
            "fees": dict(self.fees),
            "base_fees": dict(self.base_fees),
            "fees_valued": self._fees_valued,
            "fees_unvalued": dict(self._fees_unvalued),
            "seen": sorted(self._seen),
            "last_fill_ts": self.last_fill_ts,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Portfolio:
        p = cls(str(d["quote"]), d.get("initial_balances") or {})
        p.balances = {k: float(v) for k, v in d.get("balances", {}).items()}

        def pos(x: Mapping[str, Any]) -> Position:
            return Position(
                symbol=str(x["symbol"]),
                amount=float(x["amount"]),
                avg_price=float(x["avg_price"]),
                realized_pnl=float(x["realized_pnl"]),
                fees=float(x["fees"]),
            )

        p._positions = {(str(x["symbol"]), str(x["tag"])): pos(x) for x in d.get("positions", [])}
        p._totals = {str(x["symbol"]): pos(x) for x in d.get("totals", [])}
        p.fees = {k: float(v) for k, v in d.get("fees", {}).items()}
        p.base_fees = {k: float(v) for k, v in d.get("base_fees", {}).items()}
        p._fees_valued = float(d.get("fees_valued", 0.0))
        p._fees_unvalued = {k: float(v) for k, v in d.get("fees_unvalued", {}).items()}
        p._seen = set(d.get("seen", []))
        p.last_fill_ts = d.get("last_fill_ts")
        return p

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Portfolio) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]
