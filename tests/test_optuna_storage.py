"""Optuna storages shared by real worker processes: several workers opening a fresh SQLite storage at once,
and a worker SIGKILLed in the middle of a trial (its trial is failed by heartbeat and the budget finished)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import ROOT, SAMPLE

from workbench.backtest.optimize import optimize
from workbench.types import candles_from_frame

pytestmark = pytest.mark.slow
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
BTC = SAMPLE / "binance" / "BTCUSDT_1h.csv.gz"

PRELUDE = f"""
import pathlib, sys, time
import pandas as pd
from workbench.types import candles_from_frame
import workbench.backtest.optimize as opt
c = candles_from_frame(pd.read_csv({str(BTC)!r}), timeframe="1h", source="s").iloc[:3000]
c.attrs.update(symbol="BTC/USDT", timeframe="1h", exchange="binance")
"""


def _candles() -> pd.DataFrame:
    c = candles_from_frame(pd.read_csv(BTC), timeframe="1h", source="s").iloc[:3000]
    c.attrs.update(symbol="BTC/USDT", timeframe="1h", exchange="binance")
    return c


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _wait_for(path: Path, procs: list[subprocess.Popen]) -> None:
    for _ in range(3000):
        if path.exists():
            return
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a worker exited before {path.name}: {[p.returncode for p in procs]}")
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_workers_starting_together_on_a_fresh_storage_all_succeed(tmp_path) -> None:
    """No init_storage beforehand: in each of several rounds two workers open the same fresh SQLite file at
    the same instant (before the fix one of them crashed in most rounds: "table studies already exists")."""
    rounds = 6
    code = PRELUDE + (
        "folder, me = pathlib.Path(sys.argv[1]), sys.argv[2]\n"
        f"for i in range({rounds}):\n"
        "    (folder / f'ready{i}-{me}').write_text('ready')\n"
        "    while not (folder / f'go{i}').exists():\n"
        "        pass\n"
        "    opt.optimize(c, 'sma_cross', trials=3, folds=1, storage=f'sqlite:///{folder}/fresh{i}.db')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), me], env=_env(), stderr=subprocess.PIPE, text=True
        )
        for me in ("a", "b")
    ]
    try:
        for i in range(rounds):
            for me in ("a", "b"):
                _wait_for(tmp_path / f"ready{i}-{me}", procs)
            (tmp_path / f"go{i}").write_text("go")
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors
    for i in range(rounds):
        url = f"sqlite:///{tmp_path / f'fresh{i}.db'}"
        (name,) = optuna.get_all_study_names(url)
        assert len(optuna.load_study(study_name=name, storage=url).get_trials(states=COUNTED)) >= 3


def test_a_killed_worker_s_trial_is_failed_by_heartbeat_and_the_budget_is_finished(tmp_path) -> None:
    url, inside = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "inside"
    # the worker's third evaluation hangs (as a long backtest would) until it is SIGKILLed
    code = PRELUDE + (
        "real, calls = opt.evaluate, []\n"
        "def hang(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 3:\n"
        "        pathlib.Path(sys.argv[1]).write_text('in a trial')\n"
        "        time.sleep(600)\n"
        "    return real(*a, **k)\n"
        "opt.evaluate = hang\n"
        "opt.optimize(c, 'sma_cross', trials=8, folds=1, storage=sys.argv[2], heartbeat_interval=1, grace_period=2)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code, str(inside), url], env=_env())
    try:
        _wait_for(inside, [worker])
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    (name,) = optuna.get_all_study_names(url)
    trials = optuna.load_study(study_name=name, storage=url).trials
    (stale,) = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len([t for t in trials if t.state in COUNTED]) == 2
    time.sleep(4)  # the dead worker's heartbeat goes stale (grace period 2 s, database clock in seconds)

    res = optimize(
        _candles(), "sma_cross", trials=8, folds=1, storage=url, heartbeat_interval=1, grace_period=2
    )
    trials = optuna.load_study(study_name=name, storage=url).trials
    states = {t.number: t.state for t in trials}
    assert states[stale.number] == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.RUNNING not in states.values()
    assert (
        len([t for t in trials if t.state in COUNTED])
        == 8
        == res.folds[0].n_trials + len([t for t in trials if t.state == optuna.trial.TrialState.PRUNED])
    )
    # the killed trial's parameters were tried again
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == stale.number]
    assert len(retried) == 1 and retried[0].params == stale.params and retried[0].state in COUNTED
