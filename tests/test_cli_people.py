"""The research commands as people read them: formatted metrics beside buy and hold, errors in words, stored
results (`workbench backtests`), and a collector that fails fast without DNS. Through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, SAMPLE, collect_section
from fake_binance import _loopback_urls
from typer.testing import CliRunner

from workbench.backtest.results import SCHEMA_VERSION, list_results, load_result, results_dir, save_result
from workbench.cli import app
from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.metricdefs import format_metric

BASE = ["-e", "binance", "-s", "BTC/USDT", "-t", "1h"]
SMA = ["--strategy", "sma_cross", "-p", "fast=10", "-p", "slow=50", "--fees", "0.001", "--slippage", "0"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    h = tmp_path_factory.mktemp("home")
    load_sample(Store(h), SAMPLE, kinds=("candles",))
    return h


def cli(home: Path, *args: str, input: str | None = None):
    env = {"WORKBENCH_HOME": str(home), "WORKBENCH_CONFIG": str(ROOT / "config")}
    return CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)


def _row(text: str, label: str) -> list[str]:
    """The cells of the table row whose metric is ``label``."""
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if label in cells:
            return cells[cells.index(label) + 1 :]
    raise AssertionError(f"no row {label!r} in\n{text}")


def test_backtest_prints_formatted_metrics_beside_buy_and_hold_and_stores_them(home, tmp_path) -> None:
    before = {r.id for r in list_results(results_dir(home))}
    r = cli(home, "backtest", *SMA, *BASE, "--json", str(tmp_path / "bt.json"))
    assert r.exit_code == 0, r.output
    raw = json.loads((tmp_path / "bt.json").read_text())
    m = raw["metrics"]
    # the --json file keeps raw numbers; the table is formatted as in the HTML report
    assert isinstance(m["total_return"], float)
    strat, bh = _row(r.output, "Total return")
    assert strat == format_metric("total_return", m["total_return"]) and strat.endswith("%")
    assert _row(r.output, "Longest drawdown")[0] == format_metric(
        "max_drawdown_duration_days", m["max_drawdown_duration_days"]
    )
    assert _row(r.output, "Expectancy per trade")[0].endswith(" USDT")
    assert not re.search(r"\d\.\d{5,}", r.output), "a raw float was printed"
    # buy and hold of the same symbol and bars: bought at the first bar's open, held to the last close
    c = pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz")
    c = c[pd.to_datetime(c["timestamp"], unit="ms", utc=True) <= pd.Timestamp(raw["end"])]
    assert bh == format_metric("total_return", c["close"].iloc[-1] / c["open"].iloc[0] - 1)
    # beta names its benchmark, and buy and hold has a beta of 1 to itself
    assert raw["benchmark"] == "buy and hold BTC/USDT"
    assert _row(r.output, "Beta to buy and hold BTC/USDT") == [format_metric("beta", m["beta"]), "1.00"]
    # stored: the JSON (metrics, equity, trades, fills, buy and hold) and the HTML report
    new = [x for x in list_results(results_dir(home)) if x.id not in before]
    assert len(new) == 1 and new[0].kind == "backtest" and new[0].id in r.output
    d = new[0].data
    assert d["metrics"] == m and d["trades"] == raw["trades"] and d["fills"] == raw["fills"]
    assert len(d["equity"]) == len(raw["equity"]) and d["buy_and_hold"]["beta"] == pytest.approx(1.0)
    report = new[0].wait_report()  # written by a background child of the command
    assert report is not None and report.stat().st_size > 100_000 and not new[0].report_pending


def test_backtests_ls_show_rm(home) -> None:
    r = cli(home, "backtest", *SMA, *BASE)
    assert r.exit_code == 0, r.output
    s = cli(home, "sweep", "--strategy", "sma_cross", *BASE, "-g", "fast=5:15:5", "-g", "slow=50,100")
    assert s.exit_code == 0, s.output
    assert "buy and hold BTC/USDT" in s.output and _row(s.output, "Total return")[1].endswith("%")
    items = list_results(results_dir(home))
    ids = [x.id for x in items]
    assert ids == sorted(ids) and [x.kind for x in items][-2:] == ["backtest", "sweep"]
    bt, sw = items[-2], items[-1]
    assert bt.id < sw.id  # ids sort by time
    assert len(sw.data["results"]) == 6 and sw.wait_report() is not None
    # a sweep states its period as a backtest does: the same simulated bars
    assert (sw.summary["start"], sw.summary["end"]) == (bt.summary["start"], bt.summary["end"])
    ls = cli(home, "backtests", "ls")
    assert ls.exit_code == 0 and bt.id in ls.output and sw.id in ls.output
    rows = json.loads(cli(home, "backtests", "ls", "--json").output)
    assert [x["id"] for x in rows] == ids
    show = cli(home, "backtests", "show", bt.id[:-2])  # a unique prefix will do
    assert show.exit_code == 0, show.output
    assert _row(show.output, "Total return")[0] == format_metric(
        "total_return", bt.data["metrics"]["total_return"]
    )
    assert str(bt.path / "report.html") in show.output.replace("\n", "")
    assert cli(home, "backtests", "show", "last").output.count(sw.id) >= 1
    # rm asks; "n" keeps the result, --yes deletes without asking
    no = cli(home, "backtests", "rm", bt.id, input="n\n")
    assert no.exit_code == 1 and bt.path.exists()
    yes = cli(home, "backtests", "rm", bt.id, "--yes")
    assert yes.exit_code == 0 and not bt.path.exists()
    gone = cli(home, "backtests", "show", bt.id)
    assert gone.exit_code == 1 and "no stored result" in gone.output


def test_a_failed_save_leaves_no_result(tmp_path) -> None:
    def broken_report(path: Path) -> None:
        path.write_text("<html>half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_result(tmp_path, "backtest", "x", {"metrics": {}}, {}, report=broken_report)
    assert list_results(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_the_report_is_written_after_the_command_returns(tmp_path) -> None:
    """A background child writes the report: the result is stored and listed at once, the report appears
    complete (never half) under its name, a failure leaves its reason, and inline mode writes it first."""
    import threading

    gate = threading.Event()  # the child is a fork: it has its own copy, never set, so it waits the timeout

    def slow_report(path: Path) -> None:
        gate.wait(0.5)
        tmp = path.with_name(".r.tmp")
        tmp.write_text("<html>whole</html>")
        os.replace(tmp, path)

    r = save_result(tmp_path, "backtest", "x", {"metrics": {}}, {}, report=slow_report, background=True)
    assert r.report is None and r.report_pending  # stored before its report
    assert [x.id for x in list_results(tmp_path)] == [r.id]
    assert r.wait_report(30) == r.path / "report.html" and not r.report_pending
    assert (r.path / "report.html").read_text() == "<html>whole</html>"
    assert sorted(p.name for p in r.path.iterdir()) == ["report.html", "result.json"]

    def broken(path: Path) -> None:
        raise OSError("disk full")

    b = save_result(tmp_path, "backtest", "y", {"metrics": {}}, {}, report=broken, background=True)
    assert b.wait_report(30) is None and not b.report_pending
    assert b.report_error == "OSError: disk full"

    os.environ["WORKBENCH_REPORT_INLINE"] = "1"
    try:
        i = save_result(tmp_path, "backtest", "z", {"metrics": {}}, {}, report=slow_report, background=True)
    finally:
        del os.environ["WORKBENCH_REPORT_INLINE"]
    assert i.report is not None and not i.report_pending


def test_workbench_backtest_returns_before_its_report_and_show_waits(home) -> None:
    """Real processes: `workbench backtest` exits; `workbench backtests show last` names the finished report."""
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_CONFIG": str(ROOT / "config")}
    env.pop("WORKBENCH_REPORT_INLINE", None)
    run = [sys.executable, "-m", "workbench.cli"]
    bt = subprocess.run([*run, "backtest", *SMA, *BASE], env=env, capture_output=True, text=True, timeout=300)
    assert bt.returncode == 0, bt.stderr
    show = subprocess.run(
        [*run, "backtests", "show", "last"], env=env, capture_output=True, text=True, timeout=300
    )
    assert show.returncode == 0, show.stderr
    stored = list_results(results_dir(home))[-1]
    assert stored.id in bt.stdout.replace("\n", "")
    assert stored.report is not None and stored.report.stat().st_size > 100_000
    assert str(stored.report) in show.stdout.replace("\n", "")
    assert not stored.report_pending


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--direction", "longg"], 2, "'longg' is not one of long, short, both (did you mean 'long'?)"),
        (["--fees", "0.5"], 1, "--fees 0.5: must be less than 0.1"),
        (
            ["--start", "2030-01-01"],
            1,
            "--start 2030-01-01 is after the last stored bar: BTC/USDT 1h is stored from",
        ),
    ],
)
def test_errors_in_words(home, args, code, words) -> None:
    r = cli(home, "backtest", *SMA, *BASE, "--no-store", *args)
    assert r.exit_code == code
    text = " ".join(r.output.split()).replace("│", "").replace("  ", " ")
    assert " ".join(words.split()) in " ".join(text.split())
    assert "pydantic" not in r.output and "https://" not in r.output and "Traceback" not in r.output


def test_unknown_exchange_gets_a_suggestion(home) -> None:
    r = cli(home, "backtest", *SMA, "-e", "binanse", "-s", "BTC/USDT", "--no-store")
    assert (
        r.exit_code == 1 and "did you mean 'binance'?" in r.output and "stored exchanges: binance" in r.output
    )


def test_coarser_timeframe_is_resampled_with_a_note(home, tmp_path) -> None:
    r = cli(home, "backtest", *SMA, "-e", "binance", "-s", "BTC/USDT", "-t", "4h", "--no-store")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert "resampled from the stored 1h candles" in flat and "BTC/USDT 4h" in flat
    r = cli(home, "backtest", *SMA, "-e", "binance", "-s", "BTC/USDT", "-t", "7m", "--no-store")
    assert r.exit_code == 1 and "no stored timeframe divides it (stored: 5m, 1h)" in " ".join(
        r.output.split()
    )


def test_optimize_reports_progress_and_buy_and_hold(home, tmp_path) -> None:
    from workbench.backtest.optimize import optimize

    c = Store(home).candles("binance", "BTC/USDT", "1h").iloc[:2000]
    calls: list[tuple[int, int, int, int]] = []
    optimize(
        c,
        "sma_cross",
        trials=3,
        folds=2,
        storage=f"sqlite:///{tmp_path / 'o.db'}",
        progress=lambda *a: calls.append(a),
    )
    assert calls[0] == (0, 2, 0, 3) and calls[-1] == (1, 2, 3, 3)
    assert [x for x in calls if x[0] == 0][-1] == (0, 2, 3, 3)
    r = cli(
        home,
        "optimize",
        "--strategy",
        "sma_cross",
        *BASE,
        "--trials",
        "3",
        "--walk-forward",
        "2",
        "--end",
        "2024-04-01",
        "--storage",
        f"sqlite:///{tmp_path / 'cli.db'}",
    )
    assert r.exit_code == 0, r.output
    assert "Beta to buy and hold BTC/USDT" in r.output and len(_row(r.output, "Total return")) == 2


def test_collect_fails_fast_when_the_host_does_not_resolve(tmp_path) -> None:
    """No network: a DNS failure is reported once, not retried (backoff here would take minutes)."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    ccxt_cfg = {
        "urls": _loopback_urls("http://nonexistent.invalid", "ws://nonexistent.invalid"),
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "adjustForTimeDifference": False,
        },
        "enableRateLimit": False,
    }
    doc = {
        "paths": {"data": str(tmp_path / "data")},
        "exchanges": {"binance": {"ccxt": ccxt_cfg}},
        "collect": collect_section(max_retries=8, backoff_initial_s=30.0, backoff_max_s=60.0),
    }
    (cfg / "workbench.yml").write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "--config",
            str(cfg),
            "collect",
            "ohlcv",
            *BASE,
            "--since",
            "2024-01-01",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "cannot resolve the host name 'nonexistent.invalid'" in p.stderr and "not retried" in p.stderr
    assert "retry" not in p.stderr.replace("not retried", "")


def test_an_unreadable_result_is_named_not_read_as_data(tmp_path) -> None:
    home = tmp_path / "home"
    assert "no stored results" in cli(home, "backtests", "show", "last").output
    bad = results_dir(home) / "20260101T000000000000Z-sma_cross-abcd"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text('{"kind": "backtest", "metrics": {')  # cut short
    (results_dir(home) / ".tmp-20260101T000000000001Z-x-0000").mkdir()  # a save in progress: not a result
    ls = cli(home, "backtests", "ls")
    assert ls.exit_code == 0 and "unreadable" in ls.output and ".tmp-" not in ls.output
    show = cli(home, "backtests", "show", "2026")
    assert show.exit_code == 1 and "cannot read" in show.output and "result.json" in show.output


def test_a_result_from_a_newer_schema_is_refused_by_name(tmp_path) -> None:
    """Stored results carry ``schema_version``; one written by a newer workbench is an error naming the file
    (not read with today's layout), and one stored before the field existed reads as version 1."""
    home = tmp_path / "home"
    root = results_dir(home)
    new = save_result(root, "backtest", "x", {"metrics": {"sharpe": 1.0}}, {"strategy": "x"})
    assert new.data["schema_version"] == SCHEMA_VERSION
    assert load_result(root, new.id).data["metrics"] == {"sharpe": 1.0}
    old = root / "20260101T000000000000Z-old-abcd"
    old.mkdir()
    (old / "result.json").write_text(json.dumps({"kind": "backtest", "summary": {}, "metrics": {}}))
    assert load_result(root, old.name).kind == "backtest"
    newer = root / "20260102T000000000000Z-newer-abcd"
    newer.mkdir()
    doc = {"schema_version": SCHEMA_VERSION + 1, "kind": "backtest", "summary": {}, "metrics": {}}
    (newer / "result.json").write_text(json.dumps(doc))
    show = cli(home, "backtests", "show", newer.name)
    assert show.exit_code == 1 and f"schema_version {SCHEMA_VERSION + 1}" in show.output, show.output
    assert "result.json" in show.output and "upgrade workbench" in show.output
    ls = cli(home, "backtests", "ls")
    assert ls.exit_code == 0 and "unreadable" in ls.output
