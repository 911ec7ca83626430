"""The encrypted secrets store, credential resolution and redaction, with real files, real processes (the CLI
through subprocess, a real pseudo-terminal for the passphrase) and the real ccxt client in verbose mode
against the loopback fake with a signed endpoint that checks the HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from conftest import ROOT
from fake_binance import FakeBinance

from workbench import secrets as sec
from workbench.config import load_settings
from workbench.data.exchanges import make_exchange
from workbench.data.exchanges import redact as exchanges_redact

WB = [sys.executable, "-m", "workbench.cli"]
MASTER = "correct horse battery staple 42"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"  # Binance's documented example
API_SECRET = hashlib.sha256(
    b"workbench test secret"
).hexdigest()  # made here: no key-like literal in the repo


def make_cfg(folder: Path, data: Path, exchanges: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workbench.yml").write_text(
        yaml.safe_dump({"paths": {"data": str(data)}, "exchanges": exchanges or {}})
    )
    return folder


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(make_cfg(tmp_path / "config", tmp_path / "data"), env={})


def run_cli(*args: str, config: Path, env: dict | None = None, stdin: str | None = None, **kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH")}
    e.update(env or {})
    return subprocess.run(
        [*WB, "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=e,
        cwd=ROOT,
        timeout=120,
        start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
        **kw,
    )


# ------------------------------------------------------------------------------------------ the store


def test_round_trip_ciphertext_on_disk_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "d" / "secrets.enc"
    store = sec.SecretsStore(path, MASTER)
    assert store.names() == [] and not store.exists
    store.set("binance.apiKey", API_KEY)
    store.set("binance.secret", API_SECRET)
    store.set("binance.secret", API_SECRET[::-1])  # replaced
    raw = path.read_bytes()
    for plain in (API_KEY, API_SECRET, "binance", MASTER):
        assert plain.encode() not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    again = sec.SecretsStore(path, MASTER)  # a fresh derivation from the passphrase
    assert again.names() == ["binance.apiKey", "binance.secret"]
    assert again.get("binance.apiKey") == API_KEY and again.get("binance.secret") == API_SECRET[::-1]
    again.remove("binance.secret")
    assert sec.SecretsStore(path, MASTER).items() == {"binance.apiKey": API_KEY}
    with pytest.raises(
        sec.SecretsError, match=r"no secret named 'binance.secrt' \(did you mean 'binance.apiKey'"
    ):
        again.remove("binance.secrt")
    assert repr(again) == f"SecretsStore({str(path)!r})" and API_KEY not in repr(again.__dict__.keys())


def test_wrong_key_and_tampering_are_clear_errors_with_nothing_returned(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    sec.SecretsStore(path, MASTER).set("binance.apiKey", API_KEY)
    good = path.read_text()

    with pytest.raises(sec.SecretsError, match=rf"{path}: wrong master key or passphrase"):
        sec.SecretsStore(path, "not the key").names()

    doc = json.loads(good)
    token = bytearray(base64.urlsafe_b64decode(doc["token"]))
    token[40] ^= 0x01  # one bit of the ciphertext
    doc["token"] = base64.urlsafe_b64encode(bytes(token)).decode()
    path.write_text(json.dumps(doc))
    store = sec.SecretsStore(path, MASTER)
    with pytest.raises(sec.SecretsError, match=rf"{path}: the secrets file was altered .*nothing was read"):
        store.names()
    with pytest.raises(sec.SecretsError, match="altered"):
        store.get("binance.apiKey")
    with pytest.raises(sec.SecretsError, match="altered"):  # a write does not paper over the damage
        store.set("binance.secret", API_SECRET)
    assert json.loads(path.read_text()) == doc

    doc = json.loads(good)
    doc["kdf"]["salt"] = base64.b64encode(b"0" * 16).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(sec.SecretsError, match=r"wrong master key or passphrase .*header was altered"):
        sec.SecretsStore(path, MASTER).names()

    for bad, msg in (
        (good[: len(good) // 2], "not JSON"),
        (json.dumps({**json.loads(good), "version": 9}), "version 9 is newer"),
        (json.dumps({**json.loads(good), "format": "x"}), "not a workbench secrets file"),
        (json.dumps({**json.loads(good), "kdf": {"name": "scrypt", "n": 3, "r": 8, "p": 1}}), "kdf"),
    ):
        path.write_text(bad)
        with pytest.raises(sec.SecretsError, match=msg):
            sec.SecretsStore(path, MASTER).names()

    path.write_text(good)
    path.chmod(0o644)
    with pytest.raises(
        sec.SecretsError, match=rf"readable or writable by others \(mode 0644\); run: chmod 600 {path}"
    ):
        sec.SecretsStore(path, MASTER).names()


def test_names_are_checked() -> None:
    assert sec.check_name("binance.apiKey") == "binance.apiKey"
    assert sec.check_name("telegram.chat-id") == "telegram.chat-id"
    with pytest.raises(sec.SecretsError, match=r"did you mean 'binance.apiKey'"):
        sec.check_name("binance.api_key")
    with pytest.raises(sec.SecretsError, match=r"did you mean 'okx.password'"):
        sec.check_name("okx.pasword")
    for bad in ("", "a b", "-x", "x" * 200, "k=v"):
        with pytest.raises(sec.SecretsError, match="invalid secret name"):
            sec.check_name(bad)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    code = (
        "import sys; from workbench.secrets import SecretsStore\n"
        "s = SecretsStore(sys.argv[1], sys.argv[2])\n"
        "for i in range(4): s.set(f'{sys.argv[3]}.k{i}', 'v' * 8 + str(i))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), MASTER, who], env=env)
        for who in ("a", "b", "c")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert sec.SecretsStore(path, MASTER).names() == sorted(f"{w}.k{i}" for w in "abc" for i in range(4))


def test_sigkill_mid_writes_leaves_a_whole_store(tmp_path: Path) -> None:
    """A writer killed at any instant leaves the old or the new store: it opens, and holds a prefix of the
    writes; the next write sweeps a killed writer's temp file."""
    path = tmp_path / "secrets.enc"
    code = (
        "import sys; from workbench.secrets import SecretsStore\n"
        "s = SecretsStore(sys.argv[1], sys.argv[2])\n"
        "for i in range(10_000): s.set(f'k.n{i:05d}', 'value-' + str(i))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path), MASTER], env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.is_file() and len(sec.SecretsStore(path, MASTER).names()) >= 5:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    names = sec.SecretsStore(path, MASTER).names()
    assert len(names) >= 5 and names == [f"k.n{i:05d}" for i in range(len(names))]
    (tmp_path / ".secrets.enc.99999.tmp").write_bytes(b"half a store")
    store = sec.SecretsStore(path, MASTER)
    store.set("k.after", "value-after")
    assert not list(tmp_path.glob("*.tmp")) and "k.after" in store.names()


# ------------------------------------------------------------------------------------- resolution


def test_credentials_env_first_then_store(settings) -> None:
    env_master = {"WORKBENCH_MASTER_KEY": MASTER}
    assert sec.resolve_credentials("binance", settings, env=env_master) == {}  # no store file: none
    store = sec.SecretsStore(settings.secrets_path, MASTER)
    store.set("binance.apiKey", API_KEY)
    store.set("binance.secret", API_SECRET)
    store.set("okx.password", "pass-phrase-1")
    assert sec.resolve_credentials("binance", settings, env=env_master) == {
        "apiKey": API_KEY,
        "secret": API_SECRET,
    }
    assert sec.resolve_credentials("okx", settings, env=env_master) == {"password": "pass-phrase-1"}
    env = {**env_master, "WORKBENCH_BINANCE_API_KEY": "env-key-0001"}
    # the environment is used alone: never an env key paired with the store's secret
    assert sec.resolve_credentials("binance", settings, env=env) == {"apiKey": "env-key-0001"}
    ex = make_exchange(settings, "binance", with_credentials=True, env=env_master)
    assert (ex.apiKey, ex.secret) == (API_KEY, API_SECRET)
    with pytest.raises(
        sec.SecretsError, match=r"no master key: set the environment variable WORKBENCH_MASTER_KEY"
    ):
        sec.resolve_credentials("binance", settings, env={}, prompt=False)
    with pytest.raises(sec.SecretsError, match="wrong master key"):
        make_exchange(settings, "binance", with_credentials=True, env={"WORKBENCH_MASTER_KEY": "nope"})


# ------------------------------------------------------------------------------------------- masking


def test_mask_key_shows_at_most_six_characters() -> None:
    assert sec.mask_key(API_KEY) == "vmPU…8A"
    assert sec.mask_key("0123456789abcdef") == "0123…ef"
    for short in ("abc", "0123456789abcde"):
        assert sec.mask_key(short) == "****"
    assert sec.mask_key(None) == sec.mask_key("") == "(none)"


def test_redact_masks_known_values_and_credential_fields() -> None:
    sec.register_secret("s3cr3t-value-xyz")
    text = (
        "fetch Request: binance GET http://127.0.0.1:1/api/v3/account?timestamp=1&signature=abcdef0123 "
        "RequestHeaders: {'X-MBX-APIKEY': 'zzzkeyzzz', 'Content-Type': 'application/json'} "
        'body {"apiKey": "k\\"ey1", "secret": "sss"} password=hunter22&x=1 token: tok123 '
        "Authorization: Bearer abc.def https://user:pw9@host/x value s3cr3t-value-xyz"
    )
    out = sec.redact(text)
    for leaked in (
        "abcdef0123",
        "zzzkeyzzz",
        'k\\"ey1',
        "sss",
        "hunter22",
        "tok123",
        "abc.def",
        "pw9",
        "s3cr3t",
    ):
        assert leaked not in out, (leaked, out)
    assert "'Content-Type': 'application/json'" in out and "timestamp=1" in out and "x=1" in out
    assert sec.redact(out) == out


def test_install_redaction_covers_records_tracebacks_and_uncaught_errors(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    code = f"""
import logging, sys
from workbench.secrets import install_redaction
install_redaction(["the-secret-0042"], names=["mycustomfield"])
handler = logging.FileHandler({str(log)!r}); logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.DEBUG)
log = logging.getLogger("some.library")
log.debug("sending %s with mycustomfield=%s", "the-secret-0042", "custom-value-1")
try:
    raise ValueError("bad key the-secret-0042")
except ValueError:
    log.exception("failed")
raise RuntimeError("uncaught the-secret-0042")
"""
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    text = log.read_text()
    assert p.returncode == 1 and "RuntimeError: uncaught ***" in p.stderr
    assert "sending *** with mycustomfield=***" in text and "ValueError: bad key ***" in text
    assert "the-secret-0042" not in text + p.stderr + p.stdout and "custom-value-1" not in text


# -------------------------------------------------------------------------------------------- the CLI


def test_cli_set_ls_rm_with_key_from_env_and_value_from_stdin(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "config", tmp_path / "data")
    env = {"WORKBENCH_MASTER_KEY": MASTER}
    p = run_cli("secrets", "set", "binance.apiKey", config=cfg, env=env, stdin=API_KEY + "\n")
    assert p.returncode == 0, p.stderr
    assert "stored binance.apiKey" in p.stdout
    p2 = run_cli("secrets", "set", "binance.secret", config=cfg, env=env, stdin=API_SECRET)
    p3 = run_cli("secrets", "ls", config=cfg, env=env)
    assert p3.stdout.split() == ["binance.apiKey", "binance.secret"]
    store = sec.SecretsStore(tmp_path / "data" / "secrets.enc", MASTER)
    assert store.items() == {"binance.apiKey": API_KEY, "binance.secret": API_SECRET}  # newline dropped
    p4 = run_cli("secrets", "rm", "binance.secret", config=cfg, env=env)
    assert p4.returncode == 0 and "removed binance.secret" in p4.stdout
    p5 = run_cli("secrets", "rm", "binance.secret", config=cfg, env=env)
    assert p5.returncode == 1 and "no secret named 'binance.secret'" in p5.stderr
    p6 = run_cli("secrets", "set", "binance.apikey", config=cfg, env=env, stdin="x" * 20)
    assert p6.returncode == 1 and "did you mean 'binance.apiKey'" in p6.stderr
    p7 = run_cli("secrets", "set", "binance.secret", config=cfg, env=env, stdin="a-line\nanother-line\n")
    assert p7.returncode == 1 and "more than one line; nothing was written" in p7.stderr
    # no option takes the value on the command line (ps would show it)
    p8 = run_cli("secrets", "set", "binance.secret", "--value", API_SECRET, config=cfg, env=env, stdin="")
    assert p8.returncode == 2 and "No such option" in p8.stderr
    for q in (p, p2, p3, p4, p5, p6, p7):
        assert API_KEY not in q.stdout + q.stderr and API_SECRET not in q.stdout + q.stderr
        assert "Traceback" not in q.stderr
    assert sec.SecretsStore(tmp_path / "data" / "secrets.enc", MASTER).names() == ["binance.apiKey"]


def test_cli_value_never_in_argv(tmp_path: Path) -> None:
    """While ``secrets set`` waits for its value, its command line (what ``ps`` shows) holds no secret."""
    cfg = make_cfg(tmp_path / "config", tmp_path / "data")
    e = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH")}
    e["WORKBENCH_MASTER_KEY"] = MASTER
    proc = subprocess.Popen(
        [*WB, "--config", str(cfg), "secrets", "set", "binance.secret"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        _out, err = proc.communicate(API_SECRET + "\n", timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert API_SECRET.encode() not in b" ".join(cmdline) and MASTER.encode() not in b" ".join(cmdline)
    assert sec.SecretsStore(tmp_path / "data" / "secrets.enc", MASTER).get("binance.secret") == API_SECRET


def test_cli_without_master_key_or_terminal_is_a_clear_error(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "config", tmp_path / "data")
    sec.SecretsStore(tmp_path / "data" / "secrets.enc", MASTER).set("binance.apiKey", API_KEY)
    for args, stdin in ((("secrets", "ls"), None), (("secrets", "set", "binance.secret"), API_SECRET)):
        p = run_cli(*args, config=cfg, stdin=stdin)
        assert p.returncode == 1
        assert (
            "no master key: set the environment variable WORKBENCH_MASTER_KEY, or run in a terminal"
            in p.stderr
        )
        assert "Traceback" not in p.stderr and API_SECRET not in p.stdout + p.stderr
    p = run_cli("secrets", "ls", config=cfg, env={"WORKBENCH_MASTER_KEY": "nope-not-it"})
    assert p.returncode == 1 and "wrong master key or passphrase" in p.stderr and "binance" not in p.stdout


def _pty_session(argv: list[str], env: dict, answers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Run ``argv`` on a real pseudo-terminal, typing each answer after its prompt appears."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(ROOT)
        os.execve(argv[0], argv, env)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 1.0)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            while pending and pending[0][0] in seen:
                prompt, answer = pending.pop(0)
                seen = seen.replace(prompt, b"<" + prompt + b">", 1)
                os.write(fd, answer + b"\n")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen


def test_cli_passphrase_and_value_typed_at_a_terminal(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "config", tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH")}
    argv = [*WB, "--config", str(cfg), "secrets", "set", "binance.apiKey"]
    rc, seen = _pty_session(
        argv,
        env,
        [
            (b"Passphrase for", b"typed-pass-1"),
            (b"Repeat the passphrase", b"typed-pass-1"),
            (b"(hidden)", API_KEY.encode()),
        ],
    )
    assert rc == 0, seen
    assert b"stored binance.apiKey" in seen and API_KEY.encode() not in seen and b"typed-pass-1" not in seen
    assert (
        sec.SecretsStore(tmp_path / "data" / "secrets.enc", "typed-pass-1").get("binance.apiKey") == API_KEY
    )
    rc, seen = _pty_session([*argv[:-2], "ls"], env, [(b"Passphrase for", b"typed-pass-1")])
    assert rc == 0 and b"binance.apiKey" in seen
    rc, seen = _pty_session(
        [*WB, "--config", str(cfg), "secrets", "set", "x.token"],
        env,
        [(b"Passphrase for", b"other-pass")],
    )
    assert rc == 1 and b"wrong master key" in seen and b"(hidden)" not in seen


def test_config_show_never_shows_credentials(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "config", tmp_path / "data")
    sec.SecretsStore(tmp_path / "data" / "secrets.enc", MASTER).set("binance.secret", API_SECRET)
    env = {
        "WORKBENCH_MASTER_KEY": MASTER,
        "WORKBENCH_BINANCE_API_KEY": API_KEY,
        "WORKBENCH_OKX_PASSWORD": "pw-okx-77",
    }
    p = run_cli("config", "show", config=cfg, env=env)
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["security"]["secrets_file"] == str(tmp_path / "data" / "secrets.enc")
    for value in (API_KEY, API_SECRET, MASTER, "pw-okx-77"):
        assert value not in p.stdout + p.stderr
    p = run_cli(
        "config", "show", config=cfg, env={**env, "WORKBENCH__EXCHANGES__BINANCE__CCXT__SECRET": API_SECRET}
    )
    assert p.returncode == 2 and "is a credential" in p.stderr and API_SECRET not in p.stdout + p.stderr


# ------------------------------------------------- the real ccxt client, verbose, DEBUG, signed requests


class SignedFake(FakeBinance):
    """The fake plus ``GET /api/v3/account``, signed as Binance signs it (HMAC-SHA256 hex of the query string,
    key in ``X-MBX-APIKEY``). ``echo=True`` makes it answer like a careless server that quotes the key and
    the secret in its error message, so that a leak through an exception can be seen."""

    def __init__(self, key: str, secret: str, **kw):
        super().__init__(**kw)
        self.key, self.secret = key, secret
        self.echo = False
        self.verified = 0

    async def _dispatch(self, request: web.Request):
        if request.path != "/api/v3/account" or self.fault_count():
            return await super()._dispatch(request)
        with self._lock:
            self.requests.append((request.path, dict(request.query)))
        unsigned, _, signature = request.query_string.rpartition("&signature=")
        given = request.headers.get("X-MBX-APIKEY")
        if self.echo:
            msg = f"Invalid API-key {given}, IP, or permissions for action; secret was {self.secret}"
            return web.json_response({"code": -2015, "msg": msg}, status=401)
        if given != self.key:
            return web.json_response(
                {"code": -2015, "msg": "Invalid API-key, IP, or permissions"}, status=401
            )
        want = hmac.new(self.secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, want):
            return web.json_response(
                {"code": -1022, "msg": "Signature for this request is not valid."}, status=400
            )
        self.verified += 1
        balances = [
            {"asset": "USDT", "free": "1234.5", "locked": "0"},
            {"asset": "BTC", "free": "0.25", "locked": "0.01"},
        ]
        return web.json_response(
            {
                "makerCommission": 10,
                "canTrade": True,
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
            }
        )


@pytest.fixture
def signed_fake(btc_1h):
    f = SignedFake(API_KEY, API_SECRET, candles={("BTC/USDT", "1h"): btc_1h.iloc[:50]})
    with f.start():
        yield f


def test_real_ccxt_verbose_debug_signed_request_never_leaks(
    tmp_path: Path, signed_fake, caplog, capsys
) -> None:
    ccxt_cfg = {**signed_fake.ccxt_config(), "verbose": True}
    cfg = make_cfg(tmp_path / "config", tmp_path / "data", {"binance": {"ccxt": ccxt_cfg}})
    settings = load_settings(cfg, env={})
    store = sec.SecretsStore(settings.secrets_path, MASTER)
    store.set("binance.apiKey", API_KEY)
    store.set("binance.secret", API_SECRET)
    caplog.set_level(logging.DEBUG)

    ex = make_exchange(settings, "binance", with_credentials=True, env={"WORKBENCH_MASTER_KEY": MASTER})
    balance = ex.fetch_balance()
    assert signed_fake.verified == 1  # the fake checked the key and the HMAC made with the store's secret
    assert balance["USDT"]["free"] == 1234.5 and balance["BTC"]["total"] == pytest.approx(0.26)

    signed_fake.echo = True
    with pytest.raises(Exception) as auth_error:
        ex.fetch_balance()
    signed_fake.echo = False
    signed_fake.inject("http_500", path="/api/v3/account")
    with pytest.raises(Exception) as server_error:
        ex.fetch_balance()

    captured = capsys.readouterr()
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    errors = "\n".join(
        "".join(traceback.format_exception(e.value)) + str(e.value) + repr(e.value)
        for e in (auth_error, server_error)
    )
    assert "fetch Request:" in captured.out and "X-MBX-APIKEY" in captured.out  # verbose ran, masked
    assert (
        "X-MBX-APIKEY" in caplog.text and "/api/v3/account" in caplog.text
    )  # ccxt's DEBUG records ran, masked
    # ccxt's own texts, scrubbed: the server quoted the key and secret; the 500 error quotes the signed URL
    assert "Invalid API-key ***, IP" in str(auth_error.value) and "secret was ***" in str(auth_error.value)
    assert type(server_error.value).__name__ == "ExchangeNotAvailable" and "signature=***" in str(
        server_error.value
    )
    for text in (captured.out, captured.err, logs, errors):
        assert API_KEY not in text and API_SECRET not in text and MASTER not in text
    signatures = [q["signature"] for p, q in signed_fake.requests if p == "/api/v3/account"]
    assert len(signatures) == 3
    for s in signatures:
        assert s not in captured.out + errors + caplog.text


def test_describe_exchange_for_the_banner(tmp_path: Path, signed_fake) -> None:
    base = signed_fake.base_url
    cfg = make_cfg(
        tmp_path / "config",
        tmp_path / "data",
        {
            "binance": {
                "base_url": base,
                "sandbox": True,
                "ccxt": {"options": signed_fake.ccxt_config()["options"]},
            }
        },
    )
    settings = load_settings(cfg, env={})
    ex = make_exchange(
        settings,
        "binance",
        with_credentials=True,
        env={"WORKBENCH_BINANCE_API_KEY": API_KEY, "WORKBENCH_BINANCE_SECRET": API_SECRET},
    )
    info = sec.describe_exchange(ex, mode="paper")
    assert info["exchange"] == "binance" and info["mode"] == "paper" and info["sandbox"] is True
    assert info["account"] == "vmPU…8A"
    assert info["hosts"] == [base]  # sandbox URLs rewritten too: nothing points at binance.com
    assert info["urls"]["public"] == base + "/api/v3" and info["urls"]["private"] == base + "/api/v3"
    dumped = json.dumps(info)
    assert API_KEY not in dumped and API_SECRET not in dumped
    ex.load_markets()  # the URLs it reports are the ones it uses
    assert signed_fake.paths()[-1] == "/api/v3/exchangeInfo"

    import ccxt.pro

    ws = "ws://" + base.split("://", 1)[1]
    pro = ccxt.pro.binance({**signed_fake.ccxt_config(), "apiKey": API_KEY, "secret": API_SECRET})
    info = sec.describe_exchange(pro)
    assert info["hosts"] == sorted({base, ws}) and info["urls"]["ws.spot"].startswith(ws + "/")
    assert info["account"] == "vmPU…8A" and info["sandbox"] is False and API_SECRET not in json.dumps(info)
    banner = sec.format_banner(info)
    assert banner.splitlines()[:2] == ["exchange binance  mode ?", "account  vmPU…8A"]
    assert f"url      {base}  (public, private, " in banner and f"url      {ws}  (ws.spot, " in banner
    assert API_KEY not in banner
    from_config = sec.describe_exchange(
        {**signed_fake.ccxt_config(), "apiKey": "short"}, exchange_id="binance"
    )
    assert from_config["account"] == "****" and from_config["hosts"] == sorted({base, ws})
    assert from_config["exchange"] == "binance"


def test_exchanges_redact_covers_env_and_store_values(settings) -> None:
    store = sec.SecretsStore(settings.secrets_path, MASTER)
    store.set("kraken.secret", "kraken-secret-0099")
    sec.SecretsStore(settings.secrets_path, MASTER).names()  # reading registers the values
    text = exchanges_redact(
        "k=env-value-123 s=kraken-secret-0099", settings, env={"WORKBENCH_KRAKEN_API_KEY": "env-value-123"}
    )
    assert text == "k=*** s=***"


def test_redact_leaves_ordinary_fields_alone() -> None:
    text = json.dumps(
        {
            "signal": "long",
            "design": "a",
            "max_tokens": "5",
            "secrets_file": "/x/secrets.enc",
            "OK-ACCESS-SIGN": "zz9",
        }
    )
    out = sec.redact(text)
    assert json.loads(out) == {
        "signal": "long",
        "design": "a",
        "max_tokens": "5",
        "secrets_file": "/x/secrets.enc",
        "OK-ACCESS-SIGN": "***",
    }
    assert sec.redact("signal=5&sign=abc&token:xyz") == "signal=5&sign=***&token:***"


def test_redact_data_for_snapshots() -> None:
    sec.register_secret("known-secret-4711")
    snap = {
        "exchange": "binance",
        "ccxt": {"apiKey": "abcd", "headers": {"X-MBX-APIKEY": "k1"}, "timeout": 2000, "secret": None},
        "notes": ["uses known-secret-4711", 3],
        "pair": ("a", "password=xyz9"),
    }
    assert sec.redact_data(snap) == {
        "exchange": "binance",
        "ccxt": {"apiKey": "***", "headers": {"X-MBX-APIKEY": "***"}, "timeout": 2000, "secret": None},
        "notes": ["uses ***", 3],
        "pair": ("a", "password=***"),
    }


def test_guard_client_scrubs_async_client_errors(signed_fake) -> None:
    """The async client (the engine's broker uses ccxt.async_support / ccxt.pro) guarded the same way."""
    import asyncio

    import ccxt.async_support as accxt

    async def main() -> str:
        ex = sec.guard_client(
            accxt.binance({**signed_fake.ccxt_config(), "apiKey": API_KEY, "secret": API_SECRET})
        )
        try:
            await ex.fetch_balance()
            raise AssertionError("no error")
        except Exception as e:
            return "".join(traceback.format_exception(e))
        finally:
            await ex.close()

    signed_fake.echo = True
    text = asyncio.run(main())
    assert "Invalid API-key ***" in text and API_KEY not in text and API_SECRET not in text
