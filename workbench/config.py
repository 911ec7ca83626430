"""Typed, frozen settings loaded from ``config/*.yml`` plus environment overrides.

* ``config/workbench.yml``: general, paths, exchanges, collect, store, strategies
* ``config/trading.yml``, ``config/ml.yml``, ``config/security.yml``: one section each

Unknown or mistyped keys are errors that name the file and the key and suggest the closest valid key.
``WORKBENCH__SECTION__KEY=value`` overrides any key (values are parsed as YAML scalars).
``WORKBENCH_HOME`` overrides the data folder. API keys never come from these files.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "CONFIG_FILES",
    "ConfigError",
    "Settings",
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


class ConfigError(ValueError):
    """A configuration problem; the message names the file (or environment variable) and the key."""


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
            if str(key).lower() in SECRET_CCXT_KEYS:
                raise ValueError(
                    f"'{key}' is a credential: API keys come only from the environment "
                    "(WORKBENCH_<EXCHANGE>_API_KEY / _SECRET / _PASSWORD) or the secrets store, "
                    "never from a config file"
                )
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


class RiskConfig(_Model):
    max_position_fraction: float = Field(0.25, gt=0, le=1)
    max_gross_exposure: float = Field(1.0, gt=0)
    max_drawdown: float = Field(0.2, gt=0, le=1)
    daily_loss_limit: float = Field(0.05, gt=0, le=1)


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
    api_key_env_prefix: str = "WORKBENCH"
    """Keys come from ``{prefix}_{EXCHANGE}_API_KEY``, ``..._SECRET`` and ``..._PASSWORD``."""
    redact: tuple[str, ...] = ("apiKey", "secret", "password", "token", "privateKey")


class WorkbenchFile(_Model):
    """The schema of ``config/workbench.yml``."""

    general: GeneralConfig = GeneralConfig()
    paths: PathsConfig = PathsConfig()
    exchanges: dict[str, ExchangeConfig] = Field(default_factory=dict)
    collect: CollectConfig = CollectConfig()
    store: StoreConfig = StoreConfig()
    strategies: StrategiesConfig = StrategiesConfig()


# file name -> (section it fills, model). ``None`` section: the file's top level is the root sections.
CONFIG_FILES: dict[str, tuple[str | None, type[_Model]]] = {
    "workbench.yml": (None, WorkbenchFile),
    "trading.yml": ("trading", TradingConfig),
    "ml.yml": ("ml", MLConfig),
    "security.yml": ("security", SecurityConfig),
}


class Settings(WorkbenchFile):
    """Everything the workbench is configured with, resolved and frozen."""

    trading: TradingConfig = TradingConfig()
    ml: MLConfig = MLConfig()
    security: SecurityConfig = SecurityConfig()
    root: Path = Path(".")
    """The project root: relative paths resolve against it."""
    config_dir: Path | None = None
    home_override: Path | None = None

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

    def exchange(self, exchange_id: str) -> ExchangeConfig:
        return self.exchanges.get(exchange_id, ExchangeConfig())


# --------------------------------------------------------------------------------------------- loading


def find_config_dir(start: Path | None = None) -> Path | None:
    """``$WORKBENCH_CONFIG``, else the first ``config/workbench.yml`` in ``start`` or its parents."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return _config_dir_of(Path(env))
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "config" / "workbench.yml").is_file():
            return d / "config"
    return None


def _config_dir_of(path: Path) -> Path:
    path = path.expanduser().resolve()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    raise ConfigError(f"{path}: config file or folder not found")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def _model_of(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if args and getattr(annotation, "__origin__", None) is dict:
        value = _model_of(args[1])
        return value if value is not None else None
    return None


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
                msg += f" (got {e['input']!r})"
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


def load_settings(
    config: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load and validate the configuration.

    ``config`` is a config folder or any file in it (``--config``); default: ``$WORKBENCH_CONFIG`` or the
    nearest ``config/workbench.yml`` above the current folder; without one, built-in defaults.
    ``overrides`` maps dotted keys (``"collect.page_limit"``) to values, applied after the environment.
    """
    env = os.environ if env is None else env
    if config is not None:
        cfg_dir: Path | None = _config_dir_of(Path(config))
    elif env.get(CONFIG_ENV):
        cfg_dir = _config_dir_of(Path(env[CONFIG_ENV]))
    else:
        cfg_dir = find_config_dir()
    root = cfg_dir.parent if cfg_dir is not None else Path.cwd().resolve()

    merged: dict[str, Any] = {}
    for fname, (section, model) in CONFIG_FILES.items():
        raw: dict[str, Any] = {}
        path = cfg_dir / fname if cfg_dir is not None else None
        if path is not None and path.is_file():
            raw = _read_yaml(path)
            try:
                model.model_validate(raw)
            except ValidationError as e:
                raise ConfigError(_format_errors(str(path), model, e)) from None
        if section is None:
            merged.update(raw)
        else:
            merged[section] = raw

    # WORKBENCH__SECTION__KEY=value
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
        _apply_override(merged, parts, parsed, source=f"environment variable {name}")
    for dotted, value in (overrides or {}).items():
        _apply_override(merged, dotted.split("."), value, source=f"override {dotted}")

    home = env.get(HOME_ENV)
    try:
        return Settings.model_validate(
            {
                **merged,
                "root": root,
                "config_dir": cfg_dir,
                "home_override": Path(home).expanduser().resolve() if home else None,
            }
        )
    except ValidationError as e:
        raise ConfigError(
            _format_errors("configuration (after environment overrides)", Settings, e)
        ) from None


def _apply_override(merged: dict[str, Any], parts: list[str], value: Any, *, source: str) -> None:
    top = parts[0].lower()
    sections = [s for s in Settings.model_fields if s not in ("root", "config_dir", "home_override")]
    if top not in sections:
        hint = difflib.get_close_matches(top, sections, n=1, cutoff=0.5)
        raise ConfigError(
            f"{source}: unknown section '{parts[0]}'"
            + (f" (did you mean '{hint[0]}'?)" if hint else f"; valid sections: {', '.join(sections)}")
        )
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
