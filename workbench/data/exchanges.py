"""The one place that builds ccxt clients, from the typed settings.

Per exchange, any ccxt constructor option comes from ``exchanges.<id>.ccxt`` in ``config/workbench.yml``;
``urls`` (deep-merged into ccxt's own table) points a client at another host, and ``base_url`` rewrites the
host of every URL at once (how tests and the replay exchange point the real client at loopback).
Credentials (``with_credentials=True``) come from the environment (``WORKBENCH_<EXCHANGE>_API_KEY``,
``_SECRET``, ``_PASSWORD``), else from the encrypted secrets store (``<exchange>.apiKey``, ...): see
``workbench.secrets.resolve_credentials``. Every client is passed through ``workbench.secrets.guard_client``:
its verbose output, its logger and the exceptions of its HTTP layer are redacted.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt

from workbench import secrets
from workbench.config import ConfigError, Settings

__all__ = ["ExchangeSetupError", "check_exchange_ids", "credentials_from_env", "exchange_ids", "make_exchange", "redact"]

# ccxt exceptions re-exported so the rest of the data layer never imports ccxt by itself
NetworkError = ccxt.NetworkError
ExchangeError = ccxt.ExchangeError
BadSymbol = ccxt.BadSymbol
BadRequest = ccxt.BadRequest
BadResponse = ccxt.BadResponse
RateLimited = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)
AuthenticationError = ccxt.AuthenticationError
NotSupported = ccxt.NotSupported
BaseError = ccxt.BaseError


class ExchangeSetupError(ConfigError):
    """An exchange that cannot be built as configured (unknown id, unknown ccxt option)."""


def exchange_ids() -> list[str]:
    """The exchange ids ccxt knows, for ``load_settings(exchange_ids=...)`` (config may not import ccxt)."""
    return list(ccxt.exchanges)


def check_exchange_ids(settings: Settings) -> None:
    """Every configured ``exchanges.<id>`` must be a ccxt id: a typo would leave its settings unused."""
    for xid in settings.exchanges:
        if xid not in ccxt.exchanges:
            hint = difflib.get_close_matches(xid, ccxt.exchanges, n=3, cutoff=0.6)
            where = settings.config_source or "configuration"
            raise ExchangeSetupError(
                f"{where}: exchanges.{xid}: unknown exchange id {xid!r}"
                + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
            )


def credentials_from_env(exchange_id: str, settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The credentials of ``exchange_id`` from the environment only (see ``workbench.secrets``)."""
    return secrets.credentials_from_env(exchange_id, settings, env)


def redact(text: str, settings: Settings | None = None, env: Mapping[str, str] | None = None) -> str:
    """Remove every credential value (environment, secrets store, master key) and every credential-looking
    field (``signature=``, ``X-MBX-APIKEY``, ...) from ``text`` (for logs and error messages)."""
    secrets.register_secret(*secrets.env_secret_values(settings, env))
    return secrets.redact(text)


def _rewrite(url: Any, base: str) -> Any:
    if isinstance(url, dict):
        return {k: _rewrite(v, base) for k, v in url.items()}
    if not isinstance(url, str) or "://" not in url:
        return url
    b = urlsplit(base)
    u = urlsplit(url)
    scheme = b.scheme
    if u.scheme in ("ws", "wss"):
        scheme = "wss" if b.scheme == "https" else "ws"
    return urlunsplit((scheme, b.netloc, u.path, u.query, u.fragment))


def make_exchange(
    settings: Settings,
    exchange_id: str,
    *,
    with_credentials: bool = False,
    env: Mapping[str, str] | None = None,
    prompt: bool = True,
    flavour: str = "sync",
) -> ccxt.Exchange:
    """Build a configured ccxt client for ``exchange_id`` (any id in ``ccxt.exchanges``).

    ``with_credentials``: add the exchange's credentials (environment first, then the secrets store, whose
    master key comes from ``env`` or, when ``prompt``, a passphrase typed at the terminal).
    ``flavour``: ``"sync"`` (``ccxt``), ``"async"`` (``ccxt.async_support``) or ``"pro"`` (``ccxt.pro``:
    websocket streams besides the async REST methods). Every flavour gets the same options, URL rewriting,
    strict JSON parsing and redaction (``guard_client``)."""
    check_exchange_ids(settings)
    if exchange_id not in ccxt.exchanges:
        hint = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3, cutoff=0.6)
        raise ExchangeSetupError(
            f"unknown exchange {exchange_id!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
        )
    if flavour not in ("sync", "async", "pro"):
        raise ValueError(f"flavour must be sync, async or pro, not {flavour!r}")
    if flavour == "sync":
        cls = getattr(ccxt, exchange_id)
    else:
        import importlib

        module = importlib.import_module("ccxt.pro" if flavour == "pro" else "ccxt.async_support")
        if not hasattr(module, exchange_id):
            raise ExchangeSetupError(f"{exchange_id!r} has no {flavour} client in ccxt")
        cls = getattr(module, exchange_id)
    xcfg = settings.exchange(exchange_id)
    options = copy.deepcopy(xcfg.ccxt)
    where = (
        f"{settings.config_dir / 'workbench.yml'}" if settings.config_dir else "configuration"
    ) + f": exchanges.{exchange_id}.ccxt"
    probe = getattr(ccxt, exchange_id)()  # a sync probe: an async one would need an event loop to close
    valid = [n for n in dir(probe) if not n.startswith("_")]
    lower = {n.lower(): n for n in valid}
    for key in list(options):
        if not hasattr(probe, key) and key.lower() in lower:
            # environment overrides arrive lower-cased: enableratelimit -> enableRateLimit
            options[lower[key.lower()]] = options.pop(key)
            continue
        if not hasattr(probe, key):
            hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.7)
            raise ExchangeSetupError(
                f"{where}.{key}: not an option of ccxt.{exchange_id}"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
            )
    urls = options.pop("urls", None)
    if with_credentials:
        options.update(secrets.resolve_credentials(exchange_id, settings, env, prompt=prompt))
    ex = cls(options)
    if xcfg.sandbox:
        ex.set_sandbox_mode(True)
    if urls:
        ex.urls = ex.deep_extend(ex.urls, urls)
    if xcfg.base_url:
        ex.urls = _rewrite(ex.urls, xcfg.base_url)
    _strict_json(ex)
    return secrets.guard_client(ex)


def _strict_json(exchange: ccxt.Exchange) -> None:
    """Make a truncated or malformed JSON body raise ``BadResponse`` (retried by the collector).

    ccxt swallows JSON decoding errors and hands the raw text to the parsers, which then return an empty
    page (fetch_ohlcv), an empty book or garbage rows: a silent data loss. A body that starts like JSON but
    does not decode is a transport fault, so it is raised as one.
    """
    fallback = exchange.parse_json

    def parse_json(http_response: Any) -> Any:
        if exchange.is_json_encoded_object(http_response):
            try:
                return exchange.on_json_response(http_response)
            except ValueError as e:
                raise ccxt.BadResponse(
                    f"{exchange.id}: malformed JSON in the response ({e}); body starts {http_response[:120]!r}"
                ) from e
        return fallback(http_response)

    exchange.parse_json = parse_json
