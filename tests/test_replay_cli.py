"""``workbench replay-exchange`` as its own process: keys printed, the real ccxt client trades against it, the
venue survives SIGKILL with --state, SIGTERM stops it cleanly, bad options are clear errors."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import ccxt
import pytest

from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.replay import ccxt_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("replay-home") / "data"
    load_sample(Store(data), ROOT / "data" / "sample", kinds=("candles",))
    return data


def cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", "--home", str(home), "replay-exchange", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


class Proc:
    """A replay-exchange subprocess whose stdout is read line by line in a thread."""

    def __init__(self, cmd: list[str]):
        self.p = subprocess.Popen(
            cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 120) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"process ended before {prefix!r}: {self.seen}")
            self.seen.append(line)
            if line.strip().startswith(prefix):
                return line.strip()

    def value(self, prefix: str) -> str:
        return next(x.strip()[len(prefix) :].strip() for x in self.seen if x.strip().startswith(prefix))


def test_cli_serves_trades_survives_sigkill_with_state_and_stops_on_sigterm(home, tmp_path):
    state = tmp_path / "venue.json"
    args = ["-s", "BTC/USDT", "-s", "ETH/USDT", "-t", "1h", "--start", "2024-05-01", "--speed", "0"]
    args += ["--port", "0", "--balance", "USDT=5000", "--state", str(state)]
    first = Proc(cli(home, *args))
    try:
        url = first.wait_for("READY").split()[1]
        key, secret = first.value("api key:"), first.value("secret:")
        assert url.startswith("http://127.0.0.1:") and len(key) == 64 and len(secret) == 64
        c = ccxt.binance(ccxt_config(url, key, secret, timeout_ms=5000))
        c.load_markets()
        assert sorted(c.markets) == ["BTC/USDT", "ETH/USDT"]
        assert c.fetch_balance()["USDT"]["free"] == 5000.0
        px = c.fetch_ticker("ETH/USDT")["last"]
        o = c.create_order("ETH/USDT", "limit", "buy", 0.5, round(px * 0.9, 2), {"clientOrderId": "cli-1"})
    finally:
        first.p.send_signal(signal.SIGKILL)
        first.p.wait(timeout=60)
    # the venue comes back with its order and its keys (not given again: read from the state file)
    second = Proc(cli(home, *args))
    try:
        url = second.wait_for("READY").split()[1]
        assert second.value("api key:") == key
        assert any("state restored" in line for line in second.seen)
        c = ccxt.binance(ccxt_config(url, key, secret, timeout_ms=5000))
        c.load_markets()
        (again,) = c.fetch_open_orders("ETH/USDT")
        assert again["id"] == o["id"] and again["clientOrderId"] == "cli-1"
        assert c.fetch_balance()["USDT"]["used"] > 0
    finally:
        second.p.send_signal(signal.SIGTERM)
        assert second.p.wait(timeout=60) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--balance", "USDT"], "expected ASSET=AMOUNT"),
        (["--start", "2030-01-01"], "outside the data"),
        (["--faults", "boom", "--fault-rate", "0.1"], "unknown fault 'boom'"),
    ],
)
def test_cli_bad_options_are_clear_errors(home, extra, message):
    r = subprocess.run(
        cli(home, "-s", "BTC/USDT", "-t", "1h", "--port", "0", *extra),
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
