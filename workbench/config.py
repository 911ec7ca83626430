"""Typed, frozen settings loaded from ``config/*.yml``, an optional overlay file and environment overrides.

* ``config/workbench.yml``: general, paths, exchanges, collect, store, strategies
* ``config/trading.yml``, ``config/ml.yml``, ``config/security.yml``: one section each
* ``--config FILE`` (or ``WORKBENCH_CONFIG=FILE``) naming any other file: the files of FILE's folder load
  first, then FILE on top (deep-merged). FILE may hold any section of any of the four files at its top level
  (``general``, ``paths``, ``exchanges``, ``collect``, ``store``, ``trading``, ``ml``, ``security``).

Every file is checked the same way: not YAML, not a mapping, a duplicate key, an unknown or mistyped key
and (when the caller passes the known ids) an unknown exchange id are errors that name the file and the key
and suggest the closest valid key. ``WORKBENCH__SECTION__KEY=value`` overrides any key (values are parsed as
YAML scalars); a near-miss spelling of such a variable (``WORKBENCH_COLLECT__PAGE_LIMIT``) is warned about
(``ConfigWarning``). ``WORKBENCH_HOME`` overrides the data folder. Credentials never come from these files,
and an error about a credential key never shows its value.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CONFIG_FILES",
    "ConfigError",
    "ConfigWarning",
    "Settings",
    "SettingsFile",
    "find_config_dir",
    "load_settings",
]

ENV_PREFIX = "WORKBENCH__"
HOME_ENV = "WORKBENCH_HOME"
CONFIG_ENV = "WORKBENCH_CONFIG"

# ccxt constructor options that carry credentials: never accepted from a config file.
SECRET_CCXT_KEYS = frozenset(
    {"apikey", "secret", "password", "uid", "login", "privatekey", "walletaddress", "token", "twofa"}
)
# Credential-like key names refused anywhere in a config file or override (compared lower-cased, without
# ``_`` and ``-``); their values are never shown in an error.
SECRET_KEYS = SECRET_CCXT_KEYS | frozenset(
    {"apisecret", "secretkey", "passphrase", "accesstoken", "refreshtoken", "mnemonic", "seedphrase"}
)
_CREDENTIAL_HELP = (
    "API keys come only from the environment (WORKBENCH_<EXCHANGE>_API_KEY / _SECRET / _PASSWORD) "
    "or the secrets store, never from a config file"
)


def is_secret_key(key: object) -> bool:
    """Whether ``key`` names a credential (``apiKey``, ``secret``, ``api_secret``, ``privateKey``, ...)."""
    return str(key).lower().replace("_", "").replace("-", "") in SECRET_KEYS


class ConfigError(ValueError):
    """A configuration problem; the message names the file (or environment variable) and the key."""


class ConfigWarning(UserWarning):
    """Something in the environment that looks like a misspelt setting and is therefore not read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GeneralConfig(_Model):
    name: str = "workbench"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    display_timezone: str = "UTC"


class PathsConfig(_Model):
    data: str = "data"
    """The data folder, relative to the project root (the folder that holds ``config/``)."""
    sample: str = "data/sample"
    """The bundled sample that ``workbench init --sample`` loads."""


class ExchangeConfig(_Model):
    ccxt: dict[str, Any] = Field(default_factory=dict)
    """Any ccxt constructor option: rateLimit, enableRateLimit, timeout, options, sandbox, urls, ..."""
    sandbox: bool = False
    """Call ``set_sandbox_mode(True)`` before applying ``ccxt.urls`` (so ``urls`` still wins)."""
    base_url: str | None = None
    """Rewrite the scheme and host of EVERY url of the client (REST and websocket) to this one, keeping
    paths, e.g. ``http://127.0.0.1:8000``: points the real client at a local fake or replay exchange."""

    @field_validator("ccxt")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if is_secret_key(key):
                raise ValueError(f"'{key}' is a credential: {_CREDENTIAL_HELP}")
        return v


class CollectConfig(_Model):
    page_limit: int = Field(1000, ge=1, le=5000)
    """Candles (or trades) requested per call."""
    max_retries: int = Field(8, ge=0)
    """Retries of one request after a network error, rate limit or 5xx before giving up."""
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    commit_every_rows: int = Field(5000, ge=1)
    """Rows buffered before an atomic commit to the store (a kill loses at most this many, which a rerun fetches)."""
    progress: bool = True


class StoreConfig(_Model):
    gc_grace_s: float = Field(120.0, ge=0)
    """Replaced data files are deleted only this long after they left the manifest (readers may hold them)."""
    duckdb_threads: int = Field(2, ge=1)
    compression: Literal["zstd", "snappy", "lz4", "none"] = "zstd"


class StrategiesConfig(_Model):
    paths: tuple[str, ...] = ("{data}/strategies",)
    """Folders searched for ``--strategy NAME`` (every ``*.py`` file, names starting with ``_`` skipped);
    ``{data}`` is the data folder, relative paths are relative to the project root."""


class SymbolRiskConfig(_Model):
    """Per-symbol overrides of the per-order limits (``trading.risk.symbols["BTC/USDT"]``); a key left out
    (or ``null``) takes the account-wide value. Amounts are in the symbol's base units."""

    max_order_notional: float | None = Field(None, gt=0)
    price_band: float | None = Field(None, gt=0)
    min_amount: float | None = Field(None, gt=0)
    max_amount: float | None = Field(None, gt=0)
    max_position_fraction: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _amounts_ordered(self) -> SymbolRiskConfig:
        _check_amounts(self.min_amount, self.max_amount)
        return self


def _check_amounts(lo: float | None, hi: float | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min_amount ({lo!r}) is above max_amount ({hi!r})")


class RiskConfig(_Model):
    """The risk limits (``trading.risk``), checked by ``workbench.trading.risk.RiskManager`` before every
    order, on every fill and on every mark-to-market, across all strategies and manual orders of the account.
    ``null`` switches an optional limit off. Fractions are of the account's equity (in the quote currency)."""

    max_order_notional: float | None = Field(10_000.0, gt=0)
    """Largest order value in the quote currency (amount × the limit price, or × the last price)."""
    price_band: float | None = Field(0.05, gt=0)
    """Fat finger: a limit price may be at most this fraction away from the last price."""
    min_amount: float | None = Field(None, gt=0)
    """Smallest order amount, base units (set it per symbol: a BTC amount is not an ETH amount)."""
    max_amount: float | None = Field(None, gt=0)
    """Largest order amount, base units."""
    max_position_fraction: float = Field(0.25, gt=0, le=1)
    """Largest position per symbol (total over strategies and manual orders, open orders included) / equity."""
    max_gross_exposure: float = Field(1.0, gt=0)
    """Sum over symbols of |position| × last price (open orders included) / equity."""
    max_open_orders: int | None = Field(20, ge=1)
    """Working orders at the venue, all symbols together."""
    max_orders_per_minute: int | None = Field(30, ge=1)
    """New orders in any 60 s window."""
    daily_loss_limit: float = Field(0.05, gt=0, le=1)
    """Kill switch: loss since the UTC day's starting equity, as a fraction of it."""
    max_drawdown: float = Field(0.2, gt=0, le=1)
    """Kill switch: fall below the peak equity (trailing, kept across restarts), as a fraction of the peak."""
    stale_feed_s: float | None = Field(60.0, gt=0)
    """No price update for this long moves the state to REDUCING (back to ACTIVE when updates resume)."""
    flatten_on_halt: bool = False
    """On HALTED, close the positions with market orders (else only cancel the open orders)."""
    symbols: dict[str, SymbolRiskConfig] = Field(default_factory=dict)
    """Per-symbol overrides of max_order_notional, price_band, min_amount, max_amount, max_position_fraction."""

    @model_validator(mode="after")
    def _amounts_ordered(self) -> RiskConfig:
        _check_amounts(self.min_amount, self.max_amount)
        for symbol, o in self.symbols.items():
            lo = o.min_amount if o.min_amount is not None else self.min_amount
            hi = o.max_amount if o.max_amount is not None else self.max_amount
            try:
                _check_amounts(lo, hi)
            except ValueError as e:
                raise ValueError(f"symbols.{symbol}: {e}") from None
        return self


class FeesConfig(_Model):
    maker: float = Field(0.001, ge=0)
    taker: float = Field(0.001, ge=0)


class TradingConfig(_Model):
    mode: Literal["paper", "live"] = "paper"
    exchange: str = "binance"
    quote_currency: str = "USDT"
    initial_cash: float = Field(10_000.0, gt=0)
    fees: FeesConfig = FeesConfig()
    slippage_bps: float = Field(5.0, ge=0)
    journal_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """The session journal's SQLite ``synchronous`` mode. ``FULL``: every committed row survives a power cut (an
    fsync per write, milliseconds each). ``NORMAL``: a committed row survives the engine's crash or SIGKILL but
    the last commits may be lost in a power cut or an OS crash; a write costs tens of microseconds
    (docs/benchmarks.md, "Trading engine")."""
    tradable_balance_ratio: float = Field(0.99, gt=0, le=1)
    """Live sessions: a buy is capped at this fraction of the quote balance (freqtrade's setting of the same name).
    A venue refuses a market buy that would cost more than the balance, and the price can move between the
    decision and the fill; the rest is kept back for that. Paper sessions and backtests fill what the cash allows
    at the fill price, so they use all of it (and a paper session still reconciles with its backtest)."""
    order_outcome_window_s: float = Field(15.0, gt=0)
    """An order whose POST got no answer and that the venue does not know is marked REJECTED ("not found at
    the venue") only this long after it was sent; keep it longer than the venue's receive window (Binance's
    ``recvWindow``: a request older than that is dropped, never executed late)."""
    risk: RiskConfig = RiskConfig()


class OptunaConfig(_Model):
    storage: str = "sqlite:///{data}/optuna.db"
    """Any RDB URL; ``{data}`` is replaced by the data folder."""


class MLConfig(_Model):
    seed: int = 42
    torch_threads: int = Field(1, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    registry: str = "models"
    """Model registry folder, relative to the data folder."""
    optuna: OptunaConfig = OptunaConfig()


class SecurityConfig(_Model):
    secrets_file: str = "secrets.enc"
    """Encrypted secrets store, relative to the data folder."""
    master_key_env: str = "WORKBENCH_MASTER_KEY"
    """The variable holding the store's master key; unset: a passphrase is asked at the terminal."""
    api_key_env_prefix: str = "WORKBENCH"
    """Keys come from ``{prefix}_{EXCHANGE}_API_KEY``, ``..._SECRET`` and ``..._PASSWORD``."""
    redact: tuple[str, ...] = ("apiKey", "secret", "password", "token", "privateKey")
    """Further field names whose values the redactor masks in logs and messages (``workbench.secrets``)."""


class WorkbenchFile(_Model):
    """The schema of ``config/workbench.yml``."""

    general: GeneralConfig = GeneralConfig()
    paths: PathsConfig = PathsConfig()
    exchanges: dict[str, ExchangeConfig] = Field(default_factory=dict)
    collect: CollectConfig = CollectConfig()
    store: StoreConfig = StoreConfig()
    strategies: StrategiesConfig = StrategiesConfig()


class SettingsFile(WorkbenchFile):
    """The schema of an overlay file (``--config FILE``): any section of any of the config files."""

    trading: TradingConfig = TradingConfig()
    ml: MLConfig = MLConfig()
    security: SecurityConfig = SecurityConfig()


# file name -> (section it fills, model). ``None`` section: the file's top level is the root sections.
CONFIG_FILES: dict[str, tuple[str | None, type[_Model]]] = {
    "workbench.yml": (None, WorkbenchFile),
    "trading.yml": ("trading", TradingConfig),
    "ml.yml": ("ml", MLConfig),
    "security.yml": ("security", SecurityConfig),
}
SECTIONS: tuple[str, ...] = tuple(SettingsFile.model_fields)


class Settings(SettingsFile):
    """Everything the workbench is configured with, resolved and frozen."""

    root: Path = Path(".")
    """The project root: relative paths resolve against it."""
    config_dir: Path | None = None
    config_file: Path | None = None
    """The overlay file given as ``--config FILE`` (loaded on top of ``config_dir``'s files), if any."""
    home_override: Path | None = None

    @property
    def config_source(self) -> Path | None:
        """What to pass as ``--config`` / ``WORKBENCH_CONFIG`` to reload these settings elsewhere."""
        return self.config_file or self.config_dir

    @property
    def data_dir(self) -> Path:
        if self.home_override is not None:
            return self.home_override
        p = Path(self.paths.data).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def sample_dir(self) -> Path:
        p = Path(self.paths.sample).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def registry_dir(self) -> Path:
        p = Path(self.ml.registry).expanduser()
        return p if p.is_absolute() else (self.data_dir / p)

    @property
    def secrets_path(self) -> Path:
        p = Path(self.security.secrets_file).expanduser()
        return p if p.is_absolute() else (self.data_dir / p)

    @property
    def optuna_storage(self) -> str:
        """``ml.optuna.storage`` with ``{data}`` replaced by the data folder."""
        return self.ml.optuna.storage.replace("{data}", str(self.data_dir))

    def exchange(self, exchange_id: str) -> ExchangeConfig:
        return self.exchanges.get(exchange_id, ExchangeConfig())

    def effective(self) -> dict[str, Any]:
        """The settings as plain JSON data, with every path and placeholder resolved as the workbench uses them."""
        payload = self.model_dump(mode="json", exclude={"home_override"})
        payload["paths"]["data"] = str(self.data_dir)
        payload["paths"]["sample"] = str(self.sample_dir)
        payload["ml"]["registry"] = str(self.registry_dir)
        payload["ml"]["optuna"]["storage"] = self.optuna_storage
        payload["security"]["secrets_file"] = str(self.secrets_path)
        payload["strategies"]["paths"] = [str(p) for p in self.strategy_paths]
        payload["data_dir"] = str(self.data_dir)
        return payload

    @property
    def strategy_paths(self) -> list[Path]:
        """The folders of ``strategies.paths``: ``{data}`` is the data folder, relative paths are relative to the
        project root."""
        out = []
        for raw in self.strategies.paths:
            p = Path(str(raw).replace("{data}", str(self.data_dir))).expanduser()
            out.append((p if p.is_absolute() else self.root / p).resolve())
        return out


# --------------------------------------------------------------------------------------------- loading


def find_config_dir(start: Path | None = None) -> Path | None:
    """The folder of ``$WORKBENCH_CONFIG``, else the first ``config/workbench.yml`` in ``start`` or its parents."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return _resolve_config(Path(env))[0]
    return _discover(start)


def _discover(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "config" / "workbench.yml").is_file():
            return d / "config"
    return None


def _resolve_config(path: Path) -> tuple[Path, Path | None]:
    """``--config PATH`` -> (config folder, overlay file or None).

    A folder must hold at least one of the config files. A file named like one of them is part of its
    folder; any other file is an overlay on its folder's files.
    """
    p = path.expanduser().resolve()
    if p.is_dir():
        if not any((p / f).is_file() for f in CONFIG_FILES):
            raise ConfigError(
                f"{p}: no config files in this folder (expected any of {', '.join(CONFIG_FILES)})"
            )
        return p, None
    if p.is_file():
        return p.parent, (None if p.name in CONFIG_FILES else p)
    raise ConfigError(f"{p}: config file or folder not found")


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """A YAML error without the source snippet PyYAML quotes (the line may hold a credential)."""

    def at(mark: Any) -> str:
        return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""

    problem = getattr(e, "problem", None) or type(e).__name__
    msg = f"{path}: invalid YAML: {problem}{at(getattr(e, 'problem_mark', None))}"
    context = getattr(e, "context", None)
    if context:
        msg += f" ({context}{at(getattr(e, 'context_mark', None))})"
    return msg


def _check_duplicates(path: Path, node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                if key in seen:
                    dotted = ".".join((*prefix, key))
                    raise ConfigError(
                        f"{path}: {dotted}: duplicate key (line {key_node.start_mark.line + 1}; "
                        f"first at line {seen[key]}): each key may appear once"
                    )
                seen[key] = key_node.start_mark.line + 1
            _check_duplicates(path, value_node, (*prefix, key if key is not None else "?"))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(path, item, (*prefix, str(i)))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not a UTF-8 text file"
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    try:
        _check_duplicates(path, yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def _check_secrets(source: str, data: Any, prefix: tuple[str, ...] = ()) -> None:
    """Refuse a credential-like key at any depth; the message names the key, never its value."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            loc = (*prefix, str(key))
            if is_secret_key(key):
                raise ConfigError(f"{source}: {'.'.join(loc)}: '{key}' is a credential: {_CREDENTIAL_HELP}")
            _check_secrets(source, value, loc)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _check_secrets(source, item, (*prefix, str(i)))


def _check_exchange_ids(
    source: str, data: Mapping[str, Any], known: Collection[str], *, strip: str | None = None
) -> None:
    """Every key of ``exchanges`` and ``trading.exchange`` must be a known exchange id (``ccxt.exchanges``)."""

    def fail(key: str, value: str) -> None:
        if strip and key.startswith(strip + "."):
            key = key[len(strip) + 1 :]
        hint = difflib.get_close_matches(value, list(known), n=3, cutoff=0.6)
        raise ConfigError(
            f"{source}: {key}: unknown exchange id {value!r}"
            + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
        )

    exchanges = data.get("exchanges")
    if isinstance(exchanges, Mapping):
        for xid in exchanges:
            if str(xid) not in known:
                fail(f"exchanges.{xid}", str(xid))
    trading = data.get("trading")
    if isinstance(trading, Mapping):
        xid = trading.get("exchange")
        if isinstance(xid, str) and xid not in known:
            fail("trading.exchange", xid)


def _load_file(
    path: Path, section: str | None, model: type[_Model], exchange_ids: Collection[str] | None
) -> dict[str, Any]:
    """Read and check one file; returns its content as root sections."""
    raw = _read_yaml(path)
    _check_secrets(str(path), raw)
    try:
        model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(str(path), model, e)) from None
    data = raw if section is None else {section: raw}
    if exchange_ids is not None:
        _check_exchange_ids(str(path), data, exchange_ids, strip=section)
    return data


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def _model_of(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if args and getattr(annotation, "__origin__", None) is dict:
        value = _model_of(args[1])
        return value if value is not None else None
    return None


def _shows_secret(loc: tuple[Any, ...], value: Any) -> bool:
    if any(is_secret_key(p) for p in loc):
        return True
    if isinstance(value, Mapping):
        return any(is_secret_key(k) or _shows_secret((), v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_shows_secret((), v) for v in value)
    return False


def _format_errors(source: str, model: type[BaseModel], err: ValidationError, prefix: tuple = ()) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(prefix) + tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            parent, name = loc[:-1], str(loc[-1])
            valid = _valid_keys(model, tuple(loc[len(prefix) :])[:-1])
            hint = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
            msg = "unknown key" + (
                f" (did you mean '{'.'.join(map(str, (*parent, hint[0])))}'?)" if hint else ""
            )
            if valid and not hint:
                msg += f"; valid keys here: {', '.join(sorted(valid))}"
        else:
            msg = e["msg"]
            if "input" in e and e["type"] != "missing":
                # the offending value helps, except where it is (or contains) a credential
                msg += (
                    " (value not shown: credential)"
                    if _shows_secret(loc, e["input"])
                    else f" (got {e['input']!r})"
                )
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid key names at ``loc`` inside ``model``, stepping over free dict keys (exchange ids)."""
    current: Any = model
    skip_next = False
    for part in loc:
        if skip_next:
            skip_next = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        if getattr(ann, "__origin__", None) is dict:
            current = _model_of(ann.__args__[1])
            skip_next = True
            continue
        current = _model_of(ann)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _set_path(data: dict[str, Any], path: list[str], value: Any, model: type[BaseModel] | None) -> None:
    """Set ``data[path...] = value``, matching each part to an existing key or a model field case-insensitively."""
    node = data
    current: Any = model
    free = False
    for i, part in enumerate(path):
        last = i == len(path) - 1
        candidates = list(node.keys())
        if not free and isinstance(current, type) and issubclass(current, BaseModel):
            candidates += list(current.model_fields)
        match = next((c for c in candidates if c.lower() == part.lower()), part.lower())
        if last:
            node[match] = value
            return
        nxt = node.get(match)
        if not isinstance(nxt, dict):
            nxt = {}
            node[match] = nxt
        node = nxt
        # descend the model too
        if free:
            free = False
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and match in current.model_fields:
            ann = current.model_fields[match].annotation
            if getattr(ann, "__origin__", None) is dict:
                current = _model_of(ann.__args__[1])
                free = True
            else:
                current = _model_of(ann)
        else:
            current = None


# ------------------------------------------------------------------------------ near-miss variable names


def _fit_path(units: list[str], atomic: bool) -> list[str] | None:
    """The closest valid key path for ``units`` (``__``-separated parts if ``atomic``, else ``_`` tokens)."""
    out: list[str] = []
    current: Any = SettingsFile
    free = False
    i = 0
    while i < len(units):
        if free:  # a free dict key (an exchange id, a ccxt option): taken as written
            out.append(units[i].lower())
            i += 1
            free = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            rest = units[i:] if atomic else ["_".join(units[i:])]
            out.extend(u.lower() for u in rest)
            break
        fields = list(current.model_fields)
        spans = [(i + 1)] if atomic else list(range(len(units), i, -1))
        name, j = next(((c, j) for j in spans if (c := "_".join(units[i:j]).lower()) in fields), (None, 0))
        if name is None:
            j = i + 1 if atomic else len(units)
            close = difflib.get_close_matches("_".join(units[i:j]).lower(), fields, n=1, cutoff=0.6)
            if not close:
                return None if not out else [*out, *(u.lower() for u in units[i:])]
            name = close[0]
        out.append(name)
        i = j
        ann = current.model_fields[name].annotation
        free = getattr(ann, "__origin__", None) is dict
        current = _model_of(ann.__args__[1]) if free else _model_of(ann)
    return out


def env_near_miss(name: str) -> str | None:
    """For a variable that looks like a misspelt ``WORKBENCH__SECTION__KEY`` (or ``WORKBENCH_HOME`` /
    ``WORKBENCH_CONFIG``) and is therefore not read, the closest valid name (or a description of the form);
    ``None`` for every other name, the credential variables ``WORKBENCH_<EXCHANGE>_API_KEY`` included."""
    if name.startswith(ENV_PREFIX) or name in (HOME_ENV, CONFIG_ENV):
        return None
    head, sep, rest = name.partition("_")
    if not sep or (
        head != "WORKBENCH" and difflib.SequenceMatcher(None, head.upper(), "WORKBENCH").ratio() < 0.8
    ):
        return None
    rest = rest.lstrip("_")
    if "__" in rest:
        fitted = _fit_path([p for p in rest.split("__") if p], atomic=True)
    else:
        close = difflib.get_close_matches(
            "WORKBENCH_" + rest.upper(), [HOME_ENV, CONFIG_ENV], n=1, cutoff=0.85
        )
        if close:
            return close[0]
        tokens = [t for t in rest.split("_") if t]
        if not tokens or tokens[0].lower() not in SECTIONS:
            if head == "WORKBENCH":  # WORKBENCH_BINANCE_API_KEY, WORKBENCH_MASTER_KEY, ...
                return None
            return None if "__" not in name else f"{ENV_PREFIX}SECTION__KEY"
        fitted = _fit_path(tokens, atomic=False)
    if not fitted:
        return f"{ENV_PREFIX}SECTION__KEY"
    return ENV_PREFIX + "__".join(p.upper() for p in fitted)


def _warn_near_misses(env: Mapping[str, str]) -> None:
    for name in sorted(env):
        hint = env_near_miss(name)
        if hint is not None:
            warnings.warn(
                f"environment variable {name} is not a setting and is ignored (did you mean {hint}?)",
                ConfigWarning,
                stacklevel=3,
            )


# ------------------------------------------------------------------------------------------------ load


def load_settings(
    config: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    exchange_ids: Collection[str] | None = None,
) -> Settings:
    """Load and validate the configuration.

    ``config`` is a config folder, one of its files, or an overlay file loaded on top of its folder's files
    (``--config``); default: ``$WORKBENCH_CONFIG`` or the nearest ``config/workbench.yml`` above the current
    folder; without one, built-in defaults. ``overrides`` maps dotted keys (``"collect.page_limit"``) to
    values, applied after the environment. ``exchange_ids``: the known exchange ids (``ccxt.exchanges``,
    which this layer may not import); when given, every configured exchange id is checked against them.
    """
    env = os.environ if env is None else env
    source = config if config is not None else (env.get(CONFIG_ENV) or None)
    if source is not None:
        cfg_dir, overlay = _resolve_config(Path(source))
    else:
        cfg_dir, overlay = _discover(), None
    root = cfg_dir.parent if cfg_dir is not None else Path.cwd().resolve()

    merged: dict[str, Any] = {}
    for fname, (section, model) in CONFIG_FILES.items():
        path = cfg_dir / fname if cfg_dir is not None else None
        if path is not None and path.is_file():
            _deep_merge(merged, _load_file(path, section, model, exchange_ids))
    if overlay is not None:
        _deep_merge(merged, _load_file(overlay, None, SettingsFile, exchange_ids))

    # WORKBENCH__SECTION__KEY=value
    _warn_near_misses(env)
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        try:
            _apply_override(
                merged, parts, parsed, source=f"environment variable {name}", exchange_ids=exchange_ids
            )
        except ConfigError as e:
            fitted = _fit_path(parts, atomic=True)
            closest = ENV_PREFIX + "__".join(p.upper() for p in fitted) if fitted else None
            if closest and closest != ENV_PREFIX + "__".join(p.upper() for p in parts):
                raise ConfigError(f"{e} (closest valid variable: {closest})") from None
            raise
    for dotted, value in (overrides or {}).items():
        _apply_override(
            merged, dotted.split("."), value, source=f"override {dotted}", exchange_ids=exchange_ids
        )

    home = env.get(HOME_ENV)
    try:
        return Settings.model_validate(
            {
                **merged,
                "root": root,
                "config_dir": cfg_dir,
                "config_file": overlay,
                "home_override": Path(home).expanduser().resolve() if home else None,
            }
        )
    except ValidationError as e:
        raise ConfigError(
            _format_errors("configuration (after environment overrides)", Settings, e)
        ) from None


def _apply_override(
    merged: dict[str, Any],
    parts: list[str],
    value: Any,
    *,
    source: str,
    exchange_ids: Collection[str] | None = None,
) -> None:
    top = parts[0].lower()
    if top not in SECTIONS:
        hint = difflib.get_close_matches(top, SECTIONS, n=1, cutoff=0.5)
        raise ConfigError(
            f"{source}: unknown section '{parts[0]}'"
            + (f" (did you mean '{hint[0]}'?)" if hint else f"; valid sections: {', '.join(SECTIONS)}")
        )
    secret = next((p for p in parts if is_secret_key(p)), None)
    if secret is not None or _shows_secret((), value):
        raise ConfigError(f"{source}: '{secret or parts[-1]}' is a credential: {_CREDENTIAL_HELP}")
    _set_path(merged, parts, value, Settings)
    try:
        # validate the touched section now, so the error names the variable
        field_model = Settings.model_fields[top].annotation
        section_value = merged[top]
        sub = _model_of(field_model)
        if sub is not None:
            if getattr(field_model, "__origin__", None) is dict:
                for key, v in section_value.items():
                    prefix: tuple = (top, key)
                    sub.model_validate(v)
            else:
                prefix = (top,)
                sub.model_validate(section_value)
    except ValidationError as e:
        raise ConfigError(_format_errors(source, sub, e, prefix=prefix)) from None
    if exchange_ids is not None:
        _check_exchange_ids(source, merged, exchange_ids)
