"""Secrets: the encrypted store, credential resolution, masking and redaction.

It sits beside ``config`` (it imports only ``config``), so every layer above may use it; it never imports ccxt
(clients are handled duck-typed).

**The store** (``security.secrets_file``, default ``<data>/secrets.enc``) is one JSON file::

    {"format": "workbench-secrets", "version": 1,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes, per file>"},
     "check": "<base64 HMAC-SHA256 of a constant under the derived key>",
     "token": "<Fernet token of {"secrets": {name: value}}>"}

The key is derived with scrypt from the master key (the environment variable named by
``security.master_key_env``, default ``WORKBENCH_MASTER_KEY``) or, without it, from a passphrase typed at a
terminal (``/dev/tty``; never read from stdin, so a piped value cannot be taken for the passphrase). Fernet is
AES-128-CBC with an HMAC-SHA256 over the whole token: a flipped byte anywhere is detected and nothing is
returned. ``check`` tells a wrong key apart from an altered file (both are clear errors naming the file).
Names are encrypted too: a reader of the file learns nothing but its size. Writes take an ``flock`` on
``<file>.lock``, re-read the file, then write a temp file (mode 0600, fsync) and ``os.replace`` it over the old
one (fsync of the folder): a kill at any instant leaves the old or the new store. A store readable by group
or others is refused (``chmod 600`` it).

**Names**: ``<exchange id>.<ccxt credential field>``, e.g. ``binance.apiKey``, ``binance.secret``,
``okx.password``; the fields are ccxt's ``requiredCredentials`` (``apiKey``, ``secret``, ``password``, ``uid``,
``login``, ``privateKey``, ``walletAddress``, ``token``, ``twofa``), spelt with ccxt's case (``binance.apikey``
is refused with a did-you-mean). Each ccxt id has its own names (``binanceusdm.apiKey`` is not
``binance.apiKey``). Other names (``telegram.token``) may be stored too.

**Resolution** (:func:`resolve_credentials`, used by ``data.exchanges.make_exchange``): the environment first
(``{security.api_key_env_prefix}_{EXCHANGE}_API_KEY``, ``_SECRET``, ``_PASSWORD``, ``_UID``, ``_PRIVATE_KEY``,
...). If the environment holds any credential of that exchange, it is used alone and the store is not opened
(a key from one place is never paired with a secret from the other). Otherwise the store's
``<exchange>.<field>`` entries are used; no store file means no credentials; a store that exists but cannot be
opened (no master key and no terminal, wrong key, altered file) is an error, never "no credentials".

**Redaction**: every secret value the process has seen (store entries, environment credentials, the master
key) is registered; :func:`redact` replaces those values and any credential-looking field in text
(``X-MBX-APIKEY``, ``signature=``, ``apiKey=...``, ``"secret": "..."``, the names in ``security.redact``) with
``***``. :func:`install_redaction` (called by the CLI at start) makes every log record pass through it (a log
record factory, so handlers added later, DEBUG included, only ever see redacted text; tracebacks in records are
formatted and redacted at creation) and redacts uncaught tracebacks. :func:`guard_client` (called by
``make_exchange`` for every client) sends ccxt's ``verbose`` output through :func:`redact`, filters the
client's logger and scrubs the text of every exception leaving its HTTP layer (``fetch``).

**Banner helpers**: :func:`mask_key` (at most 6 characters of a key: first 4 + ``…`` + last 2, keys under 16
characters fully masked) and :func:`describe_exchange` (exchange id, effective URLs, masked account) for the
start-up banner of a trading session.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import fcntl
import functools
import hashlib
import hmac
import inspect
import json
import logging
import os
import re
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from workbench.config import Settings, is_secret_key

__all__ = [
    "CREDENTIAL_FIELDS",
    "ENV_SUFFIXES",
    "RedactingFilter",
    "SecretsError",
    "SecretsStore",
    "check_name",
    "credentials_from_env",
    "describe_exchange",
    "env_secret_values",
    "format_banner",
    "guard_client",
    "install_redaction",
    "mask_key",
    "master_key",
    "open_store",
    "redact",
    "redact_data",
    "register_secret",
    "resolve_credentials",
    "scrub_exception",
    "uninstall_redaction",
]

FORMAT = "workbench-secrets"
VERSION = 1
# scrypt cost: ~32 MiB and ~0.1 s per derivation; stored in each file, so it can be raised later
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_CHECK_MSG = b"workbench-secrets key check v1"

# ccxt's requiredCredentials fields (the names ccxt's constructor takes)
CREDENTIAL_FIELDS: tuple[str, ...] = (
    "apiKey",
    "secret",
    "password",
    "uid",
    "login",
    "privateKey",
    "walletAddress",
    "token",
    "twofa",
)
# environment variable suffix -> ccxt field: {prefix}_{EXCHANGE}_{SUFFIX}
ENV_SUFFIXES: dict[str, str] = {
    "API_KEY": "apiKey",
    "SECRET": "secret",
    "PASSWORD": "password",
    "UID": "uid",
    "LOGIN": "login",
    "PRIVATE_KEY": "privateKey",
    "WALLET_ADDRESS": "walletAddress",
    "TOKEN": "token",
    "TWOFA": "twofa",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values are not replaced in text (they would mangle every message)


class SecretsError(ValueError):
    """A secrets problem (no key, wrong key, altered file, bad name); the message names the file or name and
    never holds a secret value."""


# ------------------------------------------------------------------------------------------------ names


def check_name(name: str) -> str:
    """``name`` if it is a valid secret name, else a :class:`SecretsError` with a did-you-mean."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SecretsError(
            f"invalid secret name {name!r}: use letters, digits, '.', '_' and '-' (at most 128), "
            "e.g. binance.apiKey"
        )
    scope, dot, field = name.rpartition(".")
    if dot and field not in CREDENTIAL_FIELDS:
        by_lower = {f.lower(): f for f in CREDENTIAL_FIELDS}
        hint = by_lower.get(field.lower().replace("_", "").replace("-", ""))
        if hint is None:
            close = difflib.get_close_matches(field, CREDENTIAL_FIELDS, n=1, cutoff=0.75)
            hint = close[0] if close else None
        if hint is not None:
            raise SecretsError(
                f"secret name {name!r}: ccxt spells this credential {hint!r} (did you mean '{scope}.{hint}'?)"
            )
    return name


# ------------------------------------------------------------------------------------------------ store


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: Any, path: Path, field: str) -> bytes:
    try:
        return base64.b64decode(str(s), validate=True)
    except (ValueError, TypeError):
        raise SecretsError(f"{path}: not a valid secrets file ({field} is not base64)") from None


def _derive(master: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        master.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


class SecretsStore:
    """The encrypted secrets file at ``path``, opened with ``master`` (a master key or passphrase).

    Nothing is read until :meth:`names`, :meth:`get` or a write; every write re-reads the file under its lock.
    The repr shows the path and never a value.
    """

    def __init__(self, path: str | Path, master: str):
        if not master:
            raise SecretsError(f"{path}: an empty master key cannot open a secrets store")
        self.path = Path(path)
        self._master = master
        self._kdf: tuple[bytes, int, int, int] | None = None  # salt, n, r, p of the key below
        self._key: bytes | None = None
        self._data: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"SecretsStore({str(self.path)!r})"

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    # -- reading

    def _fernet(self, salt: bytes, n: int, r: int, p: int) -> Any:
        from cryptography.fernet import Fernet

        if self._kdf != (salt, n, r, p) or self._key is None:
            self._key = _derive(self._master, salt, n, r, p)
            self._kdf = (salt, n, r, p)
        return Fernet(base64.urlsafe_b64encode(self._key))

    def _check_value(self) -> bytes:
        assert self._key is not None
        return hmac.new(self._key, _CHECK_MSG, hashlib.sha256).digest()

    def _read(self) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        path = self.path
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise SecretsError(f"{path}: cannot read the secrets file: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise SecretsError(f"{path}: the secrets file is not a regular file")
        if st.st_mode & 0o077:
            raise SecretsError(
                f"{path}: the secrets file is readable or writable by others (mode {stat.S_IMODE(st.st_mode):04o});"
                f" run: chmod 600 {path}"
            )
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise SecretsError(f"{path}: cannot read the secrets file: {e.strerror}") from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise SecretsError(
                f"{path}: not a workbench secrets file (not JSON); it may be damaged"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise SecretsError(f"{path}: not a workbench secrets file (format is not {FORMAT!r})")
        version = doc.get("version")
        if not isinstance(version, int) or version < 1:
            raise SecretsError(f"{path}: not a valid secrets file (version {version!r})")
        if version > VERSION:
            raise SecretsError(
                f"{path}: secrets file version {version} is newer than this workbench reads ({VERSION}): upgrade"
            )
        kdf = doc.get("kdf")
        try:
            if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
                raise TypeError
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16) or n & (n - 1):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise SecretsError(f"{path}: not a valid secrets file (bad or altered kdf parameters)") from None
        salt = _unb64(kdf.get("salt"), path, "kdf.salt")
        check = _unb64(doc.get("check"), path, "check")
        token = doc.get("token")
        if not isinstance(token, str):
            raise SecretsError(f"{path}: not a valid secrets file (no token)")
        fernet = self._fernet(salt, n, r, p)
        if not hmac.compare_digest(check, self._check_value()):
            raise SecretsError(
                f"{path}: wrong master key or passphrase for this secrets file (or its header was altered); "
                "nothing was read"
            )
        try:
            plain = fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretsError(
                f"{path}: the secrets file was altered or is damaged (authentication failed); nothing was read"
            ) from None
        try:
            body = json.loads(plain.decode("utf-8"))
            secrets = body["secrets"]
            if not isinstance(secrets, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SecretsError(f"{path}: the secrets file's content is not valid; nothing was read") from None
        register_secret(*secrets.values())
        return dict(secrets)

    def _load(self) -> dict[str, str]:
        if self._data is None:
            self._data = self._read()
        return self._data

    def names(self) -> list[str]:
        """The stored names, sorted (decrypts the file: a wrong key is an error here too)."""
        return sorted(self._load())

    def get(self, name: str) -> str | None:
        return self._load().get(name)

    def items(self) -> dict[str, str]:
        return dict(self._load())

    # -- writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, secrets: dict[str, str]) -> None:
        """Seal ``secrets`` into the file; the caller holds the lock (so any temp file left is a killed writer's)."""
        from cryptography.fernet import Fernet

        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

        if self._kdf is None:
            salt = os.urandom(16)
            self._fernet(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        assert self._kdf is not None and self._key is not None
        salt, n, r, p = self._kdf
        token = Fernet(base64.urlsafe_b64encode(self._key)).encrypt(
            json.dumps({"secrets": secrets}, sort_keys=True).encode("utf-8")
        )
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt)},
            "check": _b64(self._check_value()),
            "token": token.decode("ascii"),
        }
        data = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._data = dict(secrets)

    def set(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` (created or replaced); atomic, under the store's lock."""
        check_name(name)
        if not isinstance(value, str) or not value:
            raise SecretsError(f"secret {name!r}: the value is empty")
        if "\n" in value or "\r" in value:
            raise SecretsError(f"secret {name!r}: the value holds a line break")
        register_secret(value)
        with self._locked():
            secrets = self._read()
            secrets[name] = value
            self._write(secrets)

    def remove(self, name: str) -> None:
        """Delete ``name``; an error naming it and the file if it is not stored."""
        with self._locked():
            secrets = self._read()
            if name not in secrets:
                hint = difflib.get_close_matches(name, list(secrets), n=1, cutoff=0.6)
                raise SecretsError(
                    f"{self.path}: no secret named {name!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )
            del secrets[name]
            self._write(secrets)


# -------------------------------------------------------------------------------------- master key, prompt


def _tty_available() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _prompt(text: str) -> str:
    import getpass

    return getpass.getpass(text)


def master_key(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    prompt: bool = True,
    confirm: bool = False,
) -> str:
    """The master key: ``$<security.master_key_env>``, else a passphrase typed at the terminal (twice when
    ``confirm``, for a new store); without either a :class:`SecretsError` that says what to set."""
    env = os.environ if env is None else env
    var = settings.security.master_key_env
    value = env.get(var)
    if value:
        register_secret(value)
        return value
    path = settings.secrets_path
    if not prompt or not _tty_available():
        raise SecretsError(
            f"{path}: no master key: set the environment variable {var}, or run in a terminal to type the passphrase"
        )
    first = _prompt(f"Passphrase for {path}: ")
    if not first:
        raise SecretsError(f"{path}: the passphrase is empty")
    if confirm and _prompt("Repeat the passphrase: ") != first:
        raise SecretsError(f"{path}: the passphrases differ; nothing was written")
    register_secret(first)
    return first


def open_store(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    prompt: bool = True,
    create: bool = False,
) -> SecretsStore:
    """The store at ``security.secrets_file`` with its master key (see :func:`master_key`). ``create``: the
    caller may write a new store (a typed passphrase is then asked twice)."""
    path = settings.secrets_path
    key = master_key(settings, env, prompt=prompt, confirm=create and not path.exists())
    return SecretsStore(path, key)


# -------------------------------------------------------------------------------------------- credentials


def credentials_from_env(
    exchange_id: str, settings: Settings, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``{ccxt field: value}`` from ``{prefix}_{EXCHANGE}_API_KEY`` and friends (empty values ignored)."""
    env = os.environ if env is None else env
    prefix = f"{settings.security.api_key_env_prefix}_{exchange_id.upper()}_"
    out: dict[str, str] = {}
    for suffix, field in ENV_SUFFIXES.items():
        value = env.get(prefix + suffix)
        if value:
            out[field] = value
    register_secret(*out.values())
    return out


def resolve_credentials(
    exchange_id: str,
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    prompt: bool = True,
) -> dict[str, str]:
    """The credentials of ``exchange_id`` as ccxt constructor options: the environment first (used alone when
    it holds any), then the store's ``<exchange_id>.<field>`` entries; no store file: ``{}``."""
    found = credentials_from_env(exchange_id, settings, env)
    if found:
        return found
    if not settings.secrets_path.exists():
        return {}
    store = open_store(settings, env, prompt=prompt)
    out = {}
    for field in CREDENTIAL_FIELDS:
        value = store.get(f"{exchange_id}.{field}")
        if value:
            out[field] = value
    return out


def env_secret_values(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """Every credential value in the environment (``{prefix}_*_API_KEY`` ..., and the master key)."""
    env = os.environ if env is None else env
    prefix = (settings.security.api_key_env_prefix if settings else "WORKBENCH") + "_"
    master_var = settings.security.master_key_env if settings else "WORKBENCH_MASTER_KEY"
    suffixes = tuple("_" + s for s in ENV_SUFFIXES)
    out = [v for k, v in env.items() if v and k.startswith(prefix) and k.endswith(suffixes)]
    if env.get(master_var):
        out.append(env[master_var])
    return out


# -------------------------------------------------------------------------------------------- redaction

_known: set[str] = set()
_known_lock = threading.Lock()
_default_fields = (
    "apikey",
    "api_key",
    "api-key",
    "secret",
    "password",
    "passphrase",
    "token",
    "privatekey",
    "private_key",
    "signature",
    "access-key",
    "access_key",
    "authorization",
    "mnemonic",
)
_fields: set[str] = set(_default_fields)
_patterns: tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]] | None = None


def register_secret(*values: str | None) -> None:
    """Remember secret values so that :func:`redact` (and so every log record) masks them."""
    global _known
    new = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LEN}
    if not new - _known:
        return
    with _known_lock:
        _known = _known | new


def _compile() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    global _patterns
    if _patterns is None:
        alt = "|".join(sorted((re.escape(f) for f in _fields), key=len, reverse=True))
        # 'X-MBX-APIKEY': 'value'  /  "apiKey": "value"  (dict reprs, JSON, headers): a name that ENDS with a
        # credential word ("signal", "tokens", "secrets_file" are left alone)
        quoted = re.compile(
            rf"""(?P<q>["'])(?P<name>[\w.-]*(?:{alt})|(?:[\w.-]*[_-])?sign)(?P=q)(?P<sep>\s*[:=]\s*)"""
            rf"""(?P<v>["'])(?P<val>(?:\\.|(?!(?P=v)).)*)(?P=v)""",
            re.IGNORECASE,
        )
        # signature=abc&apiKey=xyz (query strings, form bodies), Authorization: Bearer x, X-MBX-APIKEY: x
        plain = re.compile(
            rf"""(?P<name>\b[\w-]*(?:{alt})|\bsign)(?P<sep>=|:[ \t]*)(?P<val>(?:Bearer |Basic )?[^\s&'",;)}}\]]+)""",
            re.IGNORECASE,
        )
        # user:password@host in URLs
        userinfo = re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^/\s:@]+:)(?P<val>[^@/\s]+)(?P<post>@)", re.I)
        _patterns = (quoted, plain, userinfo)
    return _patterns


def redact(text: object) -> str:
    """``text`` with every registered secret value and every credential-looking field value masked (``***``)."""
    s = text if isinstance(text, str) else str(text)
    known = _known
    if known:
        for value in sorted(known, key=len, reverse=True):
            if value in s:
                s = s.replace(value, _MASK)
    if not s:
        return s
    quoted, plain, userinfo = _compile()
    lower = s.lower()  # the patterns run only where they can match: a multi-MB DEBUG body stays cheap
    if "sign" in lower or any(f in lower for f in _fields):
        s = quoted.sub(lambda m: f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['v']}{_MASK}{m['v']}", s)
        s = plain.sub(lambda m: m[0] if m["val"] == _MASK else f"{m['name']}{m['sep']}{_MASK}", s)
    if "@" in s and "://" in s:
        s = userinfo.sub(lambda m: f"{m['pre']}{_MASK}{m['post']}", s)
    return s


def _secret_field(key: object) -> bool:
    k = str(key).lower()
    return is_secret_key(key) or k == "sign" or any(k.endswith(f) for f in _fields)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, strings, numbers) with the value of every credential-named
    key (``apiKey``, ``X-MBX-APIKEY``, ``secret``, ``password``, ...) replaced by ``***`` and every string
    passed through :func:`redact`: for config snapshots, journal metadata and reports."""
    if isinstance(data, Mapping):
        return {
            k: (_MASK if v not in (None, "") and _secret_field(k) else redact_data(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact_data(v) for v in data]
    if isinstance(data, tuple):
        return tuple(redact_data(v) for v in data)
    if isinstance(data, str):
        return redact(data)
    return data


class RedactingFilter(logging.Filter):
    """A filter (for a logger or a handler) that rewrites each record's message, arguments, traceback and
    stack text through :func:`redact`; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown
            msg = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(msg), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
_HTTP_LOGGERS = ("urllib3.connectionpool", "aiohttp.client", "websockets.client")
_installed: dict[str, Any] = {}


def install_redaction(secrets: Iterable[str] = (), names: Iterable[str] = ()) -> None:
    """Redact every log record of this process from now on, and uncaught tracebacks.

    ``secrets``: values to mask (more are registered as they are read: store entries, environment
    credentials); ``names``: further credential field names (``security.redact``). Idempotent."""
    global _patterns
    register_secret(*secrets)
    extra = {n.lower() for n in names if n} - _fields
    if extra:
        _fields.update(extra)
        _patterns = None
    if "factory" not in _installed:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _FILTER.filter(record)
            return record

        _installed["previous_factory"] = previous
        _installed["factory"] = factory
        logging.setLogRecordFactory(factory)
    if "excepthook" not in _installed:
        previous_hook = sys.excepthook

        def excepthook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
            sys.stderr.write(redact("".join(traceback.format_exception(tp, value, tb))))

        _installed["previous_excepthook"] = previous_hook
        _installed["excepthook"] = excepthook
        sys.excepthook = excepthook


def uninstall_redaction() -> None:
    """Undo :func:`install_redaction` (for tests); registered values stay registered."""
    if "factory" in _installed:
        if logging.getLogRecordFactory() is _installed["factory"]:
            logging.setLogRecordFactory(_installed["previous_factory"])
        del _installed["factory"]
    if "excepthook" in _installed:
        if sys.excepthook is _installed["excepthook"]:
            sys.excepthook = _installed["previous_excepthook"]
        del _installed["excepthook"]


def scrub_exception(exc: BaseException) -> BaseException:
    """Redact, in place, the string arguments of ``exc`` and of its ``__cause__`` / ``__context__`` chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        with contextlib.suppress(Exception):
            e.args = tuple(redact(a) if isinstance(a, str) else a for a in e.args)
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return exc


def guard_client(client: Any) -> Any:
    """Make a ccxt client (sync, async or pro) safe to log: register its credentials, send its ``verbose``
    output through :func:`redact`, filter its logger, and scrub every exception that leaves its ``fetch``."""
    register_secret(*(getattr(client, f, None) for f in CREDENTIAL_FIELDS))
    if getattr(client, "_workbench_guarded", False):
        return client

    def log(*args: Any) -> None:
        print(redact(" ".join(str(a) for a in args)))

    client.log = log
    # the client's own logger, and the HTTP libraries' loggers that print request URLs (signature=...)
    for logger in (getattr(client, "logger", None), *map(logging.getLogger, _HTTP_LOGGERS)):
        if isinstance(logger, logging.Logger) and _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    fetch = getattr(client, "fetch", None)
    if fetch is not None:
        if inspect.iscoroutinefunction(fetch):

            @functools.wraps(fetch)
            async def afetch(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fetch(*args, **kwargs)
                except Exception as e:
                    scrub_exception(e)
                    raise

            client.fetch = afetch
        else:

            @functools.wraps(fetch)
            def sfetch(*args: Any, **kwargs: Any) -> Any:
                try:
                    return fetch(*args, **kwargs)
                except Exception as e:
                    scrub_exception(e)
                    raise

            client.fetch = sfetch
    client._workbench_guarded = True
    return client


# ---------------------------------------------------------------------------------------- banner helpers


def mask_key(key: str | None) -> str:
    """A key shown for recognition only: first 4 + ``…`` + last 2 characters (at most 6 of the key); a key
    under 16 characters is masked whole; no key: ``(none)``."""
    if not key:
        return "(none)"
    key = str(key)
    if len(key) < 16:
        return "****"
    return f"{key[:4]}…{key[-2:]}"


def _flatten(urls: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(urls, Mapping):
        for k, v in urls.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(urls, str) and "://" in urls:
        out[prefix] = redact(urls)


def _host(url: str) -> str:
    u = urlsplit(url)
    netloc = u.netloc.rpartition("@")[2]
    return urlunsplit((u.scheme, netloc, "", "", ""))


def describe_exchange(
    client_or_config: Any, *, exchange_id: str | None = None, mode: str | None = None
) -> dict[str, Any]:
    """What a session talks to, for its start-up banner: ``{"exchange", "mode", "account", "sandbox",
    "hosts", "urls"}``.

    ``client_or_config``: a built ccxt client (its effective URLs, after ``sandbox`` and ``base_url``
    rewriting: build it with ``data.exchanges.make_exchange``) or a mapping of ccxt constructor options
    (``urls``, ``apiKey``, optional ``id``). ``account`` is the masked API key (:func:`mask_key`); ``urls`` maps
    each API entry (``public``, ``private``, ``ws.spot``, ...) to its URL; ``hosts`` is the sorted set of
    ``scheme://host:port`` they use. No secret ever appears in the result."""
    if isinstance(client_or_config, Mapping):
        get: Callable[[str], Any] = client_or_config.get
    else:

        def get(name: str) -> Any:
            return getattr(client_or_config, name, None)

    xid = exchange_id or get("id") or "?"
    urls_table = get("urls") or {}
    api = urls_table.get("api", urls_table) if isinstance(urls_table, Mapping) else {}
    flat: dict[str, str] = {}
    _flatten(api, "", flat)
    sandbox = bool(get("isSandboxModeEnabled") or get("sandbox"))
    register_secret(*(get(f) for f in CREDENTIAL_FIELDS))
    return {
        "exchange": str(xid),
        "mode": mode,
        "account": mask_key(get("apiKey")),
        "sandbox": sandbox,
        "hosts": sorted({_host(u) for u in flat.values()}),
        "urls": dict(sorted(flat.items())),
    }


def format_banner(info: Mapping[str, Any]) -> str:
    """:func:`describe_exchange`'s result as the lines a session prints when it starts."""
    lines = [
        f"exchange {info.get('exchange')}  mode {info.get('mode') or '?'}"
        + ("  (sandbox)" if info.get("sandbox") else ""),
        f"account  {info.get('account')}",
    ]
    urls = info.get("urls") or {}
    for host in info.get("hosts") or []:
        first = ("public", "private", "ws.spot", "spot", "ws")  # what a spot session uses, then the rest
        used = sorted(
            (k for k, u in urls.items() if _host(u) == host),
            key=lambda k: (first.index(k) if k in first else len(first), k),
        )
        shown = ", ".join(used[:4]) + (f", +{len(used) - 4} more" if len(used) > 4 else "")
        lines.append(f"url      {host}  ({shown})")
    return redact("\n".join(lines))
