"""The `workbench` command as a user runs it (subprocesses), against the loopback fake with the real client."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SAMPLE, as_truth, write_config

from workbench.data.store import Store

WB = [sys.executable, "-m", "workbench.cli"]


def run(*args: str, config: Path | None = None, env: dict | None = None, check: bool = True):
    e = {**os.environ, **(env or {})}
    e.pop("WORKBENCH_HOME", None)
    e.pop("WORKBENCH_CONFIG", None)
    cmd = [*WB, *(["--config", str(config)] if config else []), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=ROOT, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_collect_ls_export_roundtrip(fake, tmp_path) -> None:
    cfg = write_config(tmp_path / "config", fake, tmp_path / "data")
    p = run(
        "collect",
        "ohlcv",
        "-e",
        "binance",
        "-s",
        "BTC/USDT",
        "-s",
        "ETH/USDT",
        "-t",
        "1h",
        "--since",
        "2024-01-01",
        config=cfg,
    )
    assert "BTC/USDT 1h: 2000 new" in p.stdout and "ETH/USDT 1h: 2000 new" in p.stdout
    p = run("data", "ls", "--json", config=cfg)
    rows = json.loads(p.stdout)
    assert {(r["symbol"], r["rows"], r["gaps"]) for r in rows} == {
        ("BTC/USDT", 2000, 0),
        ("ETH/USDT", 2000, 0),
    }
    out = tmp_path / "btc.csv"
    run("data", "export", "-e", "binance", "-s", "BTC/USDT", "-t", "1h", "--out", str(out), config=cfg)
    pd.testing.assert_frame_equal(pd.read_csv(out), fake.truth["BTC/USDT"], check_exact=True)
    # the second run is incremental and says so
    p = run("collect", "ohlcv", "-e", "binance", "-s", "BTC/USDT", "-t", "1h", config=cfg)
    assert "0 new" in p.stdout


def test_sigkill_part_way_then_rerun_equals_truth(fake, tmp_path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "config", fake, data, page_limit=100, commit_every_rows=100)
    fake.delay_s = 0.05  # slow pages so the kill lands mid-collection
    args = ["collect", "ohlcv", "-e", "binance", "-s", "BTC/USDT", "-t", "1h", "--since", "2024-01-01"]
    env = {**os.environ}
    env.pop("WORKBENCH_HOME", None)
    proc = subprocess.Popen(
        [*WB, "--config", str(cfg), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = Store(data)
    key = store.key("candles", "binance", "BTC/USDT", "1h")
    deadline = time.time() + 60
    while time.time() < deadline:
        b = store.bounds(key)
        if b is not None and b[2] >= 600:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = store.candles("binance", "BTC/USDT", "1h")
    assert 600 <= len(partial) < 2000, "the kill should land part-way"
    # what survived the kill is an exact, gap-free prefix of the truth
    pd.testing.assert_frame_equal(
        as_truth(partial), fake.truth["BTC/USDT"].iloc[: len(partial)], check_exact=True
    )
    fake.delay_s = 0
    n_before = len(fake.requests)
    run(*args, config=cfg)
    got = as_truth(store.candles("binance", "BTC/USDT", "1h"))
    pd.testing.assert_frame_equal(got, fake.truth["BTC/USDT"], check_exact=True)
    assert not got["timestamp"].duplicated().any()
    assert (np.diff(got["timestamp"]) == 3_600_000).all()
    # the rerun resumed: it did not start again from the beginning
    first = next(q for p, q in fake.requests[n_before:] if p == "/api/v3/klines")
    assert int(first["startTime"]) == int(partial.index[-1].value // 1_000_000) + 3_600_000


def test_init_sample_then_ls_and_audit(tmp_path) -> None:
    home = tmp_path / "home"
    p = run("--home", str(home), "init", "--sample", config=ROOT / "config")
    assert "candles binance BTC/USDT 5m: 71769 new rows" in p.stdout
    p = run("--home", str(home), "data", "ls", config=ROOT / "config")
    assert "ETH/USDT" in p.stdout and "71769" in p.stdout
    p = run("--home", str(home), "data", "audit", "--csv", str(tmp_path / "f.csv"), config=ROOT / "config")
    assert "audit summary" in p.stdout
    findings = pd.read_csv(tmp_path / "f.csv")
    assert set(findings["check"]) <= {"outlier"}  # the sample is clean apart from real spikes


def test_bad_config_is_a_clear_error_and_writes_nothing(tmp_path) -> None:
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "workbench.yml").write_text(f"paths:\n  data: {tmp_path / 'data'}\ncollect:\n  page_limt: 10\n")
    p = run("init", config=cfg, check=False)
    assert p.returncode == 2
    assert (
        f"{cfg / 'workbench.yml'}: collect.page_limt: unknown key (did you mean 'collect.page_limit'?)"
        in p.stderr
    )
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "data").exists()
    p = run("init", config=cfg, check=False, env={"WORKBENCH__COLLECT__PAGE_LIMIT": "x"})
    assert p.returncode == 2


def test_bad_csv_import_is_a_clear_error_and_writes_nothing(tmp_path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.csv"
    good = pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz").iloc[:100].copy()
    good.loc[57, "high"] = good.loc[57, "low"] - 1  # row 58 of the file's data
    good.to_csv(bad, index=False)
    p = run(
        "--home",
        str(home),
        "data",
        "import",
        str(bad),
        "-e",
        "binance",
        "-s",
        "BTC/USDT",
        "-t",
        "1h",
        config=ROOT / "config",
        check=False,
    )
    assert p.returncode == 1
    assert f"{bad}: row 58" in p.stderr and "inconsistent OHLC" in p.stderr
    assert Store(home).series() == []


def test_secrets_never_printed(fake, tmp_path) -> None:
    cfg = write_config(tmp_path / "config", fake, tmp_path / "data")
    secret = "S3cr3tValueThatMustNeverAppear"
    p = run(
        "config",
        "show",
        config=cfg,
        env={"WORKBENCH_BINANCE_SECRET": secret, "WORKBENCH_BINANCE_API_KEY": secret},
    )
    assert secret not in p.stdout + p.stderr
    (cfg / "workbench.yml").write_text("exchanges:\n  binance:\n    ccxt:\n      secret: abc\n")
    p = run("config", "show", config=cfg, check=False)
    assert p.returncode == 2 and "credential" in p.stderr


@pytest.mark.parametrize("args", [["--help"], ["collect", "--help"], ["data", "--help"], ["--version"]])
def test_help(args) -> None:
    assert run(*args).returncode == 0


def test_research_commands_end_to_end(tmp_path) -> None:
    home = tmp_path / "home"
    cfg = ROOT / "config"
    run("--home", str(home), "init", "--sample", config=cfg)
    base = ["-e", "binance", "-s", "BTC/USDT", "-t", "1h"]
    p = run(
        "--home",
        str(home),
        "backtest",
        "--strategy",
        "sma_cross",
        *base,
        "-p",
        "fast=10",
        "-p",
        "slow=50",
        "--fees",
        "0.001",
        "--slippage",
        "0.0005",
        "--json",
        str(tmp_path / "bt.json"),
        "--report",
        str(tmp_path / "r" / "bt.html"),
        config=cfg,
    )
    assert "Sharpe ratio" in p.stdout and (tmp_path / "r" / "bt.html").stat().st_size > 100_000
    assert "buy and hold" in p.stdout and "stored as " in p.stdout
    page = (tmp_path / "r" / "bt.html").read_text(encoding="utf-8")  # the strategy's SMAs on the price chart
    assert '"name":"fast"' in page and '"name":"slow"' in page and '<section id="benchmark">' in page
    d = json.loads((tmp_path / "bt.json").read_text())
    assert (
        d["params"] == {"fast": 10, "slow": 50}
        and d["metrics"]["n_trades"] == sum(t["status"] == "closed" for t in d["trades"]) > 0
    )
    assert (
        d["metrics"]["beta"] is not None and d["benchmark"] == "buy and hold BTC/USDT"
    )  # beta to buy and hold
    p = run(
        "--home",
        str(home),
        "sweep",
        "--strategy",
        "sma_cross",
        *base,
        "--grid",
        "fast=5:20:5",
        "--grid",
        "slow=30,60",
        "--json",
        str(tmp_path / "sw.json"),
        "--html",
        str(tmp_path / "sw.html"),
        config=cfg,
    )
    assert "8 valid of 8 combinations" in p.stdout and "deflated Sharpe" in p.stdout
    assert len(json.loads((tmp_path / "sw.json").read_text())["results"]) == 8
    p = run(
        "--home",
        str(home),
        "optimize",
        "--strategy",
        "sma_cross",
        *base,
        "--trials",
        "6",
        "--walk-forward",
        "2",
        "--json",
        str(tmp_path / "opt.json"),
        config=cfg,
    )
    assert "out-of-sample" in p.stdout and (home / "optuna.db").exists()
    assert len(json.loads((tmp_path / "opt.json").read_text())["folds"]) == 2
    p = run("--home", str(home), "check", "lookahead", "--strategy", "breakout", *base, config=cfg)
    assert "no lookahead" in p.stdout
    p = run("--home", str(home), "backtest", "--strategy", "sma_cros", *base, config=cfg, check=False)
    assert p.returncode == 1 and "did you mean 'sma_cross'" in p.stderr
    p = run(
        "--home",
        str(home),
        "backtest",
        "--strategy",
        "sma_cross",
        *base,
        "-p",
        "fast=80",
        config=cfg,
        check=False,
    )
    assert p.returncode == 1 and "fast (80) must be shorter than slow (50)" in p.stderr


def test_ml_commands_end_to_end(tmp_path) -> None:
    home = tmp_path / "home"
    cfg = ROOT / "config"
    run("--home", str(home), "init", "--sample", config=cfg)
    base = ["-e", "binance", "-s", "BTC/USDT", "-t", "1h"]
    p = run(
        "--home",
        str(home),
        "train",
        "--model",
        "mlp",
        *base,
        "--folds",
        "2",
        "--epochs",
        "3",
        "--promote",
        "--force",  # the sample's small MLP loses to logistic regression: promoted only when forced
        "--json",
        str(tmp_path / "t.json"),
        config=cfg,
    )
    assert "out-of-sample" in p.stdout and "majority" in p.stdout and "buy and hold" in p.stdout
    name = json.loads((tmp_path / "t.json").read_text())["name"]
    run("--home", str(home), "train", "--model", "mlp", *base, "--folds", "2", "--epochs", "2", config=cfg)
    p = run("--home", str(home), "models", "ls", config=cfg)
    assert "v0001" in p.stdout and "v0002" in p.stdout
    run("--home", str(home), "models", "promote", name, "v0002", config=cfg)
    p = run("--home", str(home), "models", "rollback", name, config=cfg)
    assert "rolled back to v0001" in p.stdout
    p = run(
        "--home",
        str(home),
        "predict",
        "--model",
        name,
        *base,
        "--last",
        "3",
        "--csv",
        str(tmp_path / "p.csv"),
        config=cfg,
    )
    assert "v0001" in p.stdout and len(pd.read_csv(tmp_path / "p.csv")) > 5000
    p = run("--home", str(home), "models", "show", name, config=cfg)
    assert '"sha256"' in p.stdout
    p = run("--home", str(home), "predict", "--model", "nope", *base, config=cfg, check=False)
    assert p.returncode == 1 and "no model named 'nope'" in p.stderr
    p = run("--home", str(home), "patterns", "scan", *base, "--last", "3", config=cfg)
    assert "chart patterns on BTC/USDT" in p.stdout and "all_bars" in p.stdout
    p = run(
        "--home",
        str(home),
        "sentiment",
        "score",
        "Terrible losses as markets crash badly",
        "--model",
        "vader",
        config=cfg,
    )
    assert "bearish" in p.stdout
    p = run("--home", str(home), "pipeline", "ls", config=cfg)
    assert p.returncode == 0
    p = run("--home", str(home), "pipeline", "schedule", "--cron", "0 6 * * *", config=cfg)
    assert "since=@last" in p.stdout and "OnCalendar" in p.stdout


def test_backtest_and_sweep_agree_with_start(tmp_path) -> None:
    """The same command line gives the same numbers: both warm the indicators up on the bars before --start."""
    home = tmp_path / "home"
    cfg = ROOT / "config"
    run("--home", str(home), "init", "--sample", config=cfg)
    base = ["--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "1h", "--start", "2024-06-01"]
    costs = ["--fees", "0.001", "--slippage", "0.0005"]
    run("--home", str(home), "backtest", *base, *costs, "-p", "fast=10", "-p", "slow=100",
        "--json", str(tmp_path / "bt.json"), config=cfg)  # fmt: skip
    run("--home", str(home), "sweep", *base, *costs, "--grid", "fast=10", "--grid", "slow=100",
        "--json", str(tmp_path / "sw.json"), config=cfg)  # fmt: skip
    bt = json.loads((tmp_path / "bt.json").read_text())
    sw = json.loads((tmp_path / "sw.json").read_text())["results"][0]
    assert bt["start"].startswith("2024-06-01")
    assert math.isclose(bt["metrics"]["total_return"], sw["total_return"], rel_tol=1e-9)
    assert bt["metrics"]["n_trades"] == sw["n_trades"]
    assert math.isclose(bt["metrics"]["win_rate"], sw["win_rate"], rel_tol=1e-9)
