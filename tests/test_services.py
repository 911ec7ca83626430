"""workbench.services: the replay exchange and a paper session as real background processes, driven bar by bar,
stopped cleanly; one service per name; a dead process is found dead and its name can be reused; a pid that is
no longer ours is never signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workbench import services as sv
from workbench.config import is_secret_key, load_settings
from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.trading.journal import Journal, journal_path

ROOT = Path(__file__).resolve().parents[1]
START = "2024-03-04"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    home = tmp_path_factory.mktemp("services-home") / "data"
    load_sample(Store(home), ROOT / "data" / "sample", kinds=("candles",))
    return load_settings(ROOT / "config", env={"WORKBENCH_HOME": str(home)})


def test_replay_and_paper_session_stepped_then_stopped(settings) -> None:
    replay = sv.start_replay(settings, ["BTC/USDT"], "5m", start=START, speed=0)
    session = None
    try:
        assert replay.url and replay.url.startswith("http://127.0.0.1:")
        session = sv.start_session(settings, replay, "sma_cross", ["BTC/USDT"], "5m", session="svc",
                                   params={"fast": 3, "slow": 8}, size=0.2)  # fmt: skip
        assert {s.name for s in sv.services(settings)} == {"replay", "session-svc"}
        assert (settings.data_dir / "run" / "session-svc.pid").read_text().strip() == str(session.pid)
        # one service per name
        with pytest.raises(sv.ServiceError, match="already running"):
            sv.start_session(settings, replay, "sma_cross", ["BTC/USDT"], "5m", session="svc")
        seen: list[int] = []
        now = sv.step(replay, session, 30, on_bar=lambda i, t: seen.append(t))
        assert len(seen) == 30 and seen[-1] == now and seen == sorted(seen)
        frames = sv.session_frames(settings.data_dir, "svc")
        assert len(frames["fills"]) >= 2, session.log()
        assert (
            frames["candles"]["BTC/USDT"].index[-1].value // 1_000_000 == now - 300_000
        )  # the bar just closed
        assert frames["equity"]["equity"].notna().all()
        # the session's overlay points at the replay and holds no credential
        cfg = yaml.safe_load(session.config.read_text())
        assert cfg["exchanges"]["binance"]["ccxt"]["urls"]["api"]["public"].startswith(replay.url)
        assert not [k for k in cfg["exchanges"]["binance"]["ccxt"] if is_secret_key(k)]
    finally:
        codes = [sv.stop(s) for s in (session, replay) if s is not None]
    assert codes == [0, 0], (session.log() if session else "") + replay.log()
    assert sv.services(settings) == []
    assert not (settings.data_dir / "run" / "replay.pid").exists()
    j = Journal(journal_path(settings.data_dir, "svc"), readonly=True)
    try:
        assert j.read(kinds="state")[-1].data["state"] == "STOPPED"
    finally:
        j.close()
    assert "session svc stopped" in session.log()


def test_a_process_that_dies_before_ready_is_an_error_with_its_log(settings) -> None:
    with pytest.raises(sv.ServiceError, match="before it was ready") as e:
        sv.start_replay(settings, ["NOPE/USDT"], "5m", name="bad-replay")
    assert "NOPE/USDT" in str(e.value)
    assert sv.services(settings) == []


def test_a_killed_service_is_found_dead_and_its_name_reused(settings) -> None:
    first = sv.start_replay(settings, ["BTC/USDT"], "5m", start=START, name="kill-me")
    os.kill(first.pid, signal.SIGKILL)
    sv.wait_exit(first, 60)
    assert not first.running() and "kill-me" not in {s.name for s in sv.services(settings)}
    second = sv.start_replay(settings, ["BTC/USDT"], "5m", start=START, name="kill-me")
    try:
        assert second.pid != first.pid and second.running()
        assert sv.step(second, None, 2) > 0
    finally:
        assert sv.stop(second) == 0
    sv.stop(first)  # stopping a dead service is harmless


def test_a_pid_that_is_not_ours_is_never_signalled(settings, tmp_path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        svc = sv.Service(
            "stranger", "replay", other.pid, tmp_path, command=[sys.executable, "-m", "workbench.cli"]
        )
        assert not svc.running()
        sv.stop(svc, timeout_s=1)
        assert other.poll() is None  # still alive: stop() did not touch it
    finally:
        other.kill()
        other.wait()


def test_live_sessions_need_explicit_confirmation(settings) -> None:
    with pytest.raises(sv.ServiceError, match="yes=True"):
        sv.start_session(settings, None, "sma_cross", ["BTC/USDT"], "5m", mode="live")
    with pytest.raises(sv.ServiceError, match="paper or live"):
        sv.start_session(settings, None, "sma_cross", ["BTC/USDT"], "5m", mode="real")


def test_services_stop_with_the_process_that_started_them_unless_detached(settings) -> None:
    script = (
        "import sys; from workbench import services as sv; from workbench.config import load_settings;"
        f"s = load_settings({str(ROOT / 'config')!r}, env={{'WORKBENCH_HOME': {str(settings.data_dir)!r}}});"
        "a = sv.start_replay(s, ['BTC/USDT'], '5m', start='2024-03-04', name='attached');"
        "d = sv.start_replay(s, ['BTC/USDT'], '5m', start='2024-03-04', name='detached', detach=True);"
        "print(a.pid, d.pid)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    attached, detached = map(int, p.stdout.split())
    left = {s.name: s for s in sv.services(settings)}
    assert "attached" not in left and not Path(f"/proc/{attached}").exists()
    assert left["detached"].pid == detached
    assert sv.stop(left["detached"]) is None  # not our child: no exit code, but stopped
    assert sv.wait_exit(left["detached"], 60) is None and not left["detached"].running()


def test_paper_demo_cli_runs_a_session_and_fresh_archives_the_last_one(settings) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WORKBENCH_HOME": str(settings.data_dir),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("WORKBENCH_CONFIG", None)
    cmd = [sys.executable, "-m", "workbench.cli", "--config", str(ROOT / "config"), "paper-demo", "--session",
           "cli-demo", "--bars", "12", "--fresh"]  # fmt: skip
    for _ in range(2):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "12 bars of BTC/USDT 5m" in p.stdout and "exit codes [0, 0]" in p.stdout
    assert "archived to" in p.stdout
    sessions = settings.data_dir / "trading" / "sessions"
    archived = [d for d in sessions.iterdir() if d.name.startswith("cli-demo.archived-")]
    assert len(archived) == 1 and (archived[0] / "journal.sqlite").exists()
    assert not [s for s in sv.services(settings) if s.name in ("replay", "session-cli-demo")]
    # a running session is never archived
    replay = sv.start_replay(settings, ["BTC/USDT"], "5m", start=START, name="replay-arch")
    try:
        run = sv.start_session(settings, replay, "sma_cross", ["BTC/USDT"], "5m", session="cli-demo")
        with pytest.raises(sv.ServiceError, match="is running"):
            sv.archive_session(settings, "cli-demo")
        sv.stop(run)
    finally:
        sv.stop(replay)
