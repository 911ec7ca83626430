"""Strategies of the user's own, from a file or a strategies folder, through the real command line (backtest,
sweep, optimize, check lookahead, strategies), in fresh processes (pickled classes), and every load error."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SAMPLE
from typer.testing import CliRunner

from workbench.backtest.sweep import sweep
from workbench.cli import app
from workbench.strategies import ParamError, StrategyLoadError, get_strategy, load_strategy
from workbench.strategies.loader import discover, strategy_source
from workbench.types import candles_from_frame

MOMENTUM = '''
"""My strategies."""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.strategies import Param, Params, Strategy


@dataclass
class Rule:  # a dataclass needs its module in sys.modules while the file runs
    lookback: int


class Momentum(Strategy):
    """Long after a rise over the lookback, short after a fall."""

    name = "{name}"

    class Params(Params):
        lookback: int = Param({default}, low=2, high=200, step=1, doc="bars")

    def target(self, data, features=None):
        c = data["close"]
        rule = Rule(self.params.lookback)
        return pd.Series(np.sign(c / c.shift(rule.lookback) - 1), index=data.index, name=self.name)
'''


def momentum(name: str = "my_momentum", default: int = 24) -> str:
    return MOMENTUM.replace("{name}", name).replace("{default}", str(default))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A data folder with the sample and, in its default strategies folder, a file defining ``folder_momo``."""
    h = tmp_path_factory.mktemp("home")
    r = CliRunner().invoke(app, ["--config", str(ROOT / "config"), "--home", str(h), "init", "--sample"])
    assert r.exit_code == 0, r.output
    (h / "strategies").mkdir()
    (h / "strategies" / "folder.py").write_text(momentum("folder_momo", 12))
    (h / "strategies" / "_helpers.py").write_text("raise RuntimeError('never imported')\n")
    return h


@pytest.fixture
def wb(home, monkeypatch):
    """Run ``workbench ...`` in this process (the callback sets WORKBENCH_HOME; monkeypatch restores it)."""
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.delenv("WORKBENCH_CONFIG", raising=False)
    monkeypatch.delenv("WORKBENCH__STRATEGIES__PATHS", raising=False)

    def run(*args: str, code: int = 0):
        r = CliRunner().invoke(app, ["--config", str(ROOT / "config"), "--home", str(home), *args])
        assert r.exit_code == code, f"{args} -> {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
        return r

    return run


MARKET = ["-e", "binance", "-s", "BTC/USDT", "-t", "1h"]


def test_a_user_file_runs_through_backtest_sweep_optimize_and_lookahead(wb, tmp_path) -> None:
    f = tmp_path / "my_strategies.py"
    f.write_text(momentum())
    spec = f"{f}:Momentum"
    wb("backtest", "--strategy", spec, *MARKET, "-p", "lookback=48", "--json", str(tmp_path / "bt.json"))
    d = json.loads((tmp_path / "bt.json").read_text())
    assert d["strategy"] == "my_momentum" and d["params"] == {"lookback": 48}
    assert d["metrics"]["n_trades"] > 0
    r = wb(
        "sweep",
        "--strategy",
        spec,
        *MARKET,
        "--grid",
        "lookback=12,24,48",
        "--json",
        str(tmp_path / "sw.json"),
    )
    assert "3 valid of 3 combinations" in r.stdout
    rows = json.loads((tmp_path / "sw.json").read_text())["results"]
    assert sorted(x["lookback"] for x in rows) == [12, 24, 48]
    r = wb(
        "optimize",
        "--strategy",
        spec,
        *MARKET,
        "--trials",
        "4",
        "--walk-forward",
        "2",
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--json",
        str(tmp_path / "opt.json"),
    )
    assert "out-of-sample" in r.stdout
    folds = json.loads((tmp_path / "opt.json").read_text())["folds"]
    assert len(folds) == 2 and all(set(x["best_params"]) == {"lookback"} for x in folds)
    r = wb("check", "lookahead", "--strategy", spec, *MARKET)
    assert "my_momentum" in r.stdout and "no lookahead" in r.stdout


def test_a_file_with_one_strategy_needs_no_class_name_and_may_be_relative(wb, tmp_path, monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.py").write_text(momentum("relative_momo"))
    monkeypatch.chdir(tmp_path)
    r = wb("backtest", "--strategy", "sub/mine.py", *MARKET)
    assert r.stdout.startswith("relative_momo {'lookback': 24}")


def test_by_name_from_the_default_folder_and_from_strategies_paths(wb, home, tmp_path, monkeypatch) -> None:
    r = wb("backtest", "--strategy", "folder_momo", *MARKET)
    assert r.stdout.startswith("folder_momo {'lookback': 12}")
    r = wb("strategies")
    assert "folder_momo" in r.stdout and str(home / "strategies" / "folder.py") in r.stdout
    assert "sma_cross" in r.stdout and "built-in" in r.stdout
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "more.py").write_text(momentum("extra_momo", 6))
    monkeypatch.setenv("WORKBENCH__STRATEGIES__PATHS", f"[{extra}, '{{data}}/strategies']")
    r = wb("check", "lookahead", "--strategy", "extra_momo", *MARKET)
    assert "extra_momo {'lookback': 6}: no lookahead" in r.stdout
    wb("backtest", "--strategy", "folder_momo", *MARKET)  # both folders are searched
    monkeypatch.setenv("WORKBENCH__STRATEGIES__PATHS", f"['{{data}}/strategies', {home}/strategies]")
    wb("backtest", "--strategy", "folder_momo", *MARKET)  # one folder listed twice is no duplicate
    monkeypatch.setenv("WORKBENCH__STRATEGIES__PATHS", f"[{extra}]")
    r = wb("backtest", "--strategy", "folder_momo", *MARKET, code=1)
    assert "unknown strategy 'folder_momo'" in r.stderr and str(extra) in r.stderr


def test_a_name_defined_in_two_files_is_refused_naming_both(wb, tmp_path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "one.py").write_text(momentum("twin"))
    (b / "two.py").write_text(momentum("twin", 30))
    monkeypatch.setenv("WORKBENCH__STRATEGIES__PATHS", f"[{a}, {b}]")
    r = wb("backtest", "--strategy", "twin", *MARKET, code=1)
    assert "'twin' is defined twice" in r.stderr
    assert str(a / "one.py") in r.stderr and str(b / "two.py") in r.stderr
    # a file of the folder shadowing a built-in is refused as well, even when the built-in is asked for
    (a / "one.py").write_text(momentum("sma_cross"))
    (b / "two.py").unlink()
    r = wb("backtest", "--strategy", "sma_cross", *MARKET, code=1)
    assert "'sma_cross' is defined twice" in r.stderr and str(a / "one.py") in r.stderr
    # one of them can still be run by its file
    r = wb("backtest", "--strategy", f"{a / 'one.py'}:Momentum", *MARKET)
    assert r.stdout.startswith("sma_cross {'lookback': 24}")


def test_a_syntax_error_names_file_and_line_on_the_command_line(wb, tmp_path) -> None:
    f = tmp_path / "broken.py"
    f.write_text("from workbench.strategies import Strategy\n\n\nclass Broken(Strategy)\n    name = 'x'\n")
    r = wb("backtest", "--strategy", f"{f}:Broken", *MARKET, code=1)
    assert f"{f}:4: syntax error" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------ load errors


def write(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return f


def test_load_errors_name_the_file_and_the_class(tmp_path) -> None:
    with pytest.raises(StrategyLoadError, match=r"strategy file not found: .*nope\.py"):
        load_strategy(str(tmp_path / "nope.py"))
    f = write(tmp_path, "two.py", momentum() + "\n\nclass Other(Momentum):\n    name = 'other'\n")
    with pytest.raises(StrategyLoadError, match=r"defines 2 strategies \(Momentum, Other\); choose one"):
        load_strategy(str(f))
    assert load_strategy(f"{f}:Other").name == "other"
    with pytest.raises(
        StrategyLoadError,
        match=r"no class 'Momentun' \(did you mean 'Momentum'\?\); strategies in the file: Momentum, Other",
    ):
        load_strategy(f"{f}:Momentun")
    with pytest.raises(StrategyLoadError, match="'Rule' is a class but not a Strategy subclass"):
        load_strategy(f"{f}:Rule")
    with pytest.raises(StrategyLoadError, match="'np' is a module but not a Strategy subclass"):
        load_strategy(f"{f}:np")
    f = write(tmp_path, "none.py", "x = 1\n")
    with pytest.raises(StrategyLoadError, match=r"none\.py: defines no Strategy subclass"):
        load_strategy(str(f))
    f = write(
        tmp_path,
        "fails.py",
        """\
        import math

        LIMIT = math.sqrt(-1)
        """,
    )
    with pytest.raises(
        StrategyLoadError, match=r"fails.py:3: error while importing .*ValueError: math domain"
    ):
        load_strategy(str(f))
    f = write(
        tmp_path,
        "abstract.py",
        """\
        from workbench.strategies import Params, Strategy

        class Half(Strategy):
            name = "half"
            class Params(Params):
                pass
        """,
    )
    with pytest.raises(StrategyLoadError, match=r"class Half is abstract \(implement target\)"):
        load_strategy(f"{f}:Half")
    f = write(
        tmp_path,
        "noname.py",
        """\
        from workbench.strategies import Params, Strategy

        class NoName(Strategy):
            class Params(Params):
                pass
            def target(self, data, features=None):
                return data["close"] * 0
        """,
    )
    with pytest.raises(StrategyLoadError, match=r"noname\.py: class NoName: set a class attribute `name"):
        load_strategy(str(f))
    with pytest.raises(ParamError, match=r"unknown strategy 'sma_cros' \(did you mean 'sma_cross'\?\)"):
        load_strategy("sma_cros", [tmp_path / "missing"])
    with pytest.raises(ParamError, match="missing \\(missing\\)"):
        load_strategy("zzz", [tmp_path / "missing"])


def test_a_changed_file_is_loaded_again_and_an_unchanged_one_reused(tmp_path) -> None:
    f = write(tmp_path, "edit.py", momentum("edited", 10))
    first = load_strategy(str(f))
    assert load_strategy(str(f)) is first
    f.write_text(momentum("edited", 111))
    os.utime(f, ns=(f.stat().st_mtime_ns + 10**9, f.stat().st_mtime_ns + 10**9))
    again = load_strategy(str(f))
    assert again is not first and again().params.lookback == 111
    assert (
        strategy_source(again) == str(f.resolve())
        and strategy_source(get_strategy("sma_cross")) == "built-in"
    )
    assert discover([tmp_path])["edited"][0] is again


# ------------------------------------------------------------------------------------ other processes


def test_a_user_class_pickles_into_a_fresh_process(tmp_path) -> None:
    """Workers (multiprocessing with spawn, Dask, Optuna on several processes) unpickle the class by importing
    its module by name in a new interpreter: the loader's finder turns that name back into the file."""
    f = write(tmp_path, "pickled.py", momentum("pickled", 5))
    cls = load_strategy(f"{f}:Momentum")
    btc = candles_from_frame(
        pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz").iloc[:500], timeframe="1h", source="sample"
    )
    want = cls(lookback=7).target(btc)
    child = (
        "import pickle, sys\n"
        "cls, strat, btc = pickle.loads(sys.stdin.buffer.read())\n"
        "sys.stdout.buffer.write(pickle.dumps((cls.name, strat.target(btc))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps((cls, cls(lookback=7), btc)),
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    name, got = pickle.loads(p.stdout)
    assert name == "pickled"
    pd.testing.assert_series_equal(got, want)


def test_workers_that_get_the_strategy_as_a_string_load_the_file(tmp_path) -> None:
    """scale.sweep_symbols / optimize_symbols hand the strategy to Dask tasks as a string."""
    f = write(tmp_path, "by_string.py", momentum("by_string"))
    btc = candles_from_frame(
        pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz").iloc[:1500], timeframe="1h", source="sample"
    )
    res = sweep(btc, f"{f}:Momentum", {"lookback": [12, 24]})
    assert res.strategy == "by_string" and res.n_valid == 2
