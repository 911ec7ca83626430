"""A writer and several readers as separate OS processes on one store: no lock error, no torn or partial
read, nothing lost. Then a writer SIGKILLed at random moments leaves a consistent store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.data.store import Store

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import store_workers as w  # noqa: E402

pytestmark = pytest.mark.slow


def _py(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "store_workers.py"), *args]


@pytest.mark.parametrize("grace", [0.05, 30.0], ids=["aggressive-gc", "normal-gc"])
def test_one_writer_many_reader_processes(tmp_path: Path, grace: float) -> None:
    root = str(tmp_path / "store")
    Store(root)  # create
    done = str(tmp_path / "done")
    generations = 40
    readers = [
        subprocess.Popen(_py("reader", root, str(grace), done, "120"), stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    time.sleep(0.5)  # readers start first: they must cope with an absent, then growing series
    wp = subprocess.run(
        _py("writer", root, str(generations), str(grace), done), capture_output=True, text=True
    )
    assert wp.returncode == 0, wp.stderr
    reports = []
    for r in readers:
        stdout, _ = r.communicate(timeout=120)
        assert r.returncode == 0
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    for rep in reports:
        assert rep["problems"] == [], rep
        assert rep["errors"] == 0, rep
        assert rep["reads"] >= 5, rep
    # readers saw the series grow through several generations while the writer ran
    assert len(set().union(*[set(r["generations_seen"]) for r in reports])) >= 3
    # nothing lost: the final state is the last generation, complete
    store = Store(root)
    c = store.candles("fake", "GEN/USDT", "5m")
    truth = w.truth(generations * w.PAGE)
    assert len(c) == generations * w.PAGE
    assert np.array_equal(c["close"].to_numpy(), truth["close"].to_numpy())
    assert set(np.unique(c["volume"])) == {float(generations)}


def test_two_writer_processes_same_series_lose_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    Store(root)
    code = (
        "import sys; sys.path.insert(0, {here!r}); import store_workers as w; from workbench.data.store import Store\n"
        "s = Store({root!r}); k = s.key('candles', 'fake', 'TWO/USDT', '5m'); t = w.truth(20000)\n"
        "for i in range({start}, 20000, 2000): s.write(k, t.iloc[i:i + 1000])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code.format(here=str(HERE), root=root, start=start)])
        for start in (0, 1000)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    c = Store(root).candles("fake", "TWO/USDT", "5m")
    t = w.truth(20000)
    assert len(c) == 20000
    assert np.array_equal(c["close"].to_numpy(), t["close"].to_numpy())


def test_writer_sigkilled_at_random_moments_leaves_a_consistent_store(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    Store(root)
    rng = np.random.default_rng(1)
    killed = 0
    for i in range(6):
        symbol = f"K{i}/USDT"
        p = subprocess.Popen(_py("writer", root, "60", "0", str(tmp_path / "done"), symbol))
        time.sleep(float(rng.uniform(0.4, 1.5)))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            killed += 1
        p.wait()
        store = Store(root, gc_grace_s=0)
        if store.manifest(store.key("candles", "fake", symbol, "5m")) is None:
            continue  # killed before its first commit: nothing visible, which is consistent
        c = store.candles("fake", symbol, "5m")
        vols = np.unique(c["volume"])
        assert len(vols) == 1, f"torn state after kill: {vols}"
        assert len(c) == int(vols[0]) * w.PAGE, "partial commit visible after kill"
        truth = w.truth(len(c))
        assert np.array_equal(c["close"].to_numpy(), truth["close"].to_numpy())
    assert killed >= 3, "the writer finished too fast to be killed part-way; raise the generation count"
    # a later writer on a killed series completes it; the stray files of killed writers do not get in the way
    subprocess.run(_py("writer", root, "30", "0", str(tmp_path / "done"), "K0/USDT"), check=True)
    c = Store(root).candles("fake", "K0/USDT", "5m")
    assert len(c) == 30 * w.PAGE and set(np.unique(c["volume"])) == {30.0}
