"""The replay exchange: recorded candles served as a live Binance spot exchange on 127.0.0.1.

The unmodified ``ccxt.binance``, ``ccxt.async_support.binance`` and ``ccxt.pro.binance`` clients work against it
(:meth:`ReplayExchange.ccxt_config` points every URL of theirs here), so a strategy, the trading engine or a
notebook can trade a recorded period as if it were live, against faults if asked. Product code: the
``workbench replay-exchange`` command runs it in its own process; :meth:`ReplayExchange.run_in_thread` runs it
inside a test or a notebook.

Design (what users of nautilus_trader / freqtrade dry-runs would expect, written down):

Clock
    ``replay_ms = start_ms + (wall_now - wall_start) · speed`` (:class:`ReplayClock`); it stops at the end of
    the data (the earliest last-candle close over the symbols). ``speed=0`` or :meth:`~ReplayExchange.pause`
    stops it and :meth:`~ReplayExchange.advance` moves it by exact steps; the same controls are on the loopback
    admin API (``POST /_replay/clock`` with ``{"pause": true}``, ``{"resume": true}``, ``{"speed": 60}``,
    ``{"advance_ms": 300000}``, ``{"to_ms": ...}``; ``GET /_replay/status``). It never goes back.
    ``GET /api/v3/time`` answers the replay time. Nothing after it is served: klines up to the candle open at
    the clock, that one as formed so far (its close time is in the future), trades up to the clock.

Prices within a bar
    With candles only, the path inside each bar is ``open -> low -> high -> close`` for a bar that closes at or
    above its open and ``open -> high -> low -> close`` otherwise, the corners at 0, 1/3, 2/3 and 1 of the bar,
    straight lines between (:mod:`workbench.replay.market`). The current price is that path rounded to the tick.
    The still-open kline is the path so far (open, the extremes reached, the current price, volume pro rata);
    a closed kline is the recorded candle, exactly.

Trades, book
    ``trades_per_bar`` (default 60) synthetic trades per bar, evenly spaced from the open, priced on the path,
    each a 1/60 share of the bar's volume; trade ids are ``bar index · trades_per_bar + k + 1`` (stable across
    restarts); the aggressor is the seller when the price ticked down. The book is synthetic
    (:class:`BookParams`): best bid at the current price, best ask ``spread_ticks`` above, ``levels`` levels a
    side one tick apart, level ``j`` holding ``qty·(1 + j/2)``. The book is recomputed every ``step_ms`` replay
    milliseconds and its update id is ``replay_ms // step_ms``: REST ``/api/v3/depth`` gives ``lastUpdateId``
    and the ``depthUpdate`` stream gives contiguous ``U``/``u`` ranges per connection, so ccxt's diff-depth sync
    holds.

Recorded trades and books
    Where the store holds recorded trades for a symbol (``trades`` series), they are served inside their span
    (first to last recorded trade, "the tape") instead of the synthetic ones, with their recorded ids, and the
    current price there is the last recorded trade (so ticker, book and matching follow the tape; klines stay
    the recorded candles). A recorded order-book snapshot (``orderbook`` series) is the book from its time
    until the next snapshot or ``book_hold_ms`` (60 s) later; its update id is still ``replay_ms // step_ms``.
    Trade ids are therefore not monotonic across the tape's edges; ``fromId`` finds the trade by id and pages
    on in time order.

Streams
    Websocket at ``/ws`` (and ``/ws/<n>``, the path ccxt.pro uses; ``/stream?streams=...`` for combined
    streams) with ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``: ``<sym>@kline_<tf>`` (the open candle
    as it forms with ``x=false`` on every clock change, each candle once closed with ``x=true``), ``@trade``,
    ``@aggTrade``, ``@depth`` / ``@depth@100ms`` (diffs), ``@depth5|10|20`` (partial books), ``@bookTicker``,
    ``@ticker``, ``@miniTicker``. Events are pushed every 0.1 s of wall time and at once on a clock change.

Account and orders (:mod:`workbench.replay.venue`)
    One spot account (``balances``, default ``{quote_currency: initial_cash}`` of ``trading.yml``), the test keys
    printed at start (or given). Signed endpoints check ``X-MBX-APIKEY`` (-2014 missing, -2015 wrong), the hex
    HMAC-SHA256 of the query string + body (-1022), ``timestamp``/``recvWindow`` (-1021) against the wall clock
    or the replay clock (either passes, so ccxt with or without ``adjustForTimeDifference`` works):
    ``GET /api/v3/account``, ``POST|GET|DELETE /api/v3/order``, ``GET|DELETE /api/v3/openOrders``,
    ``GET /api/v3/allOrders``, ``GET /api/v3/myTrades``. MARKET, LIMIT (GTC/IOC/FOK) and LIMIT_MAKER; fills
    with :func:`workbench.sim.fills.market_fill` (fees and slippage default from ``trading.yml``), whole
    (no partial fills), fees in the quote currency. ``exchangeInfo`` carries PRICE_FILTER ``tickSize``,
    LOT_SIZE ``stepSize`` (the decimals of the recorded prices and volumes) and NOTIONAL ``minNotional``
    (default 5), and orders are checked against them (-1013). State can be persisted to a JSON file
    (``state_path``): a restarted replay exchange keeps its orders, trades, balances, keys and clock.

Faults (off unless asked)
    :data:`FAULT_KINDS`: ``5xx``, ``429``, ``drop``, ``timeout`` (the request is not processed) and
    ``timeout-after-accept``, ``drop-after-accept``, ``1007`` (processed, e.g. the order is accepted, and then
    the answer is lost). Random ones with ``fault_rate`` over the chosen kinds (seeded), exact ones with
    :meth:`~ReplayExchange.inject` or ``POST /_replay/faults`` (``{"fault": "drop-after-accept", "path":
    "/api/v3/order", "method": "POST", "times": 1}``); ``POST /_replay/ws/drop`` closes every websocket.

Robustness
    A bad request gets Binance-style error JSON (``{"code", "msg"}``); an unexpected error in a handler gives
    -1000 with HTTP 500 and is logged; the server keeps running. It binds loopback only (its admin API has no
    authentication).

Not modelled: the user-data stream (``watch_orders``/``watch_balance``: poll ``fetch_order`` instead), stop
orders, partial fills by volume, rate limits, other timeframes than the one replayed.
"""

from workbench.replay.clock import ReplayClock
from workbench.replay.market import BookParams, MarketSeries
from workbench.replay.server import FAULT_KINDS, ReplayError, ReplayExchange, ccxt_config
from workbench.replay.venue import ApiError, Venue

__all__ = [
    "FAULT_KINDS",
    "ApiError",
    "BookParams",
    "MarketSeries",
    "ReplayClock",
    "ReplayError",
    "ReplayExchange",
    "Venue",
    "ccxt_config",
]
