"""The lookahead check: cuts at every signal catch a strategy that peeks on a few bars, the leaking bars are
reported exactly (in the result, the CLI output and its JSON), every built-in passes, and the cut budget holds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, sample_candles
from typer.testing import CliRunner

from workbench.cli import app
from workbench.strategies import Params, Strategy, get_strategy, strategy_names
from workbench.strategies.lookahead import check_lookahead, signal_bars

JUMP = 0.025  # next-bar returns above 2.5 %: 17 of the sample's 5,980 hours (0.28 %)


def load(sym: str) -> pd.DataFrame:
    return sample_candles(sym)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return load("BTC")


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    return load("ETH")


def jumps(c: pd.DataFrame) -> pd.Series:
    """The bars before a jump (what a peeking strategy buys): known only one bar later."""
    close = c["close"]
    return (close.shift(-1) / close - 1) > JUMP


class RarePeek(Strategy):
    """Flat, except long on the bars before a jump: peeks on 0.3 % of the bars."""

    name = "rare_peek_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        return jumps(data).astype("float64")


class HiddenPeek(Strategy):
    """A causal SMA cross that goes long before a jump: the peeks hide among ordinary signals."""

    name = "hidden_peek_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        base = get_strategy("sma_cross")().target(data)
        return base.where(~jumps(data), 1.0)


class EveryBarPeek(Strategy):
    name = "every_bar_peek_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        return np.sign(data["close"].shift(-1) - data["close"])


class FullSampleNorm(Strategy):
    name = "fullsample_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        c = data["close"]
        return np.sign((c - c.mean()) / c.std())


class PairLegPeek(Strategy):
    """Two assets: the first leg is causal (a 168-bar trend), the second peeks before its jumps."""

    name = "pair_leg_peek_test"
    assets = 2

    class Params(Params):
        pass

    def target(self, data, features=None):
        (a, da), (b, db) = data.items()
        trend = np.sign(da["close"] - da["close"].rolling(168).mean())
        return pd.DataFrame({a: trend, b: jumps(db).astype("float64")})


def test_a_strategy_peeking_on_a_few_bars_is_caught_and_every_leaking_bar_reported(btc) -> None:
    peeks = jumps(btc)
    assert 0.002 < peeks.mean() < 0.004  # the 0.3 %
    rep = check_lookahead(RarePeek(), btc)
    assert not rep.ok and "LOOKAHEAD" in rep.summary()
    # exactly the bars that bought before a jump leaked, each long in full and flat once the future is cut
    assert rep.leaking_times == [str(t) for t in btc.index[peeks.to_numpy()]]
    assert rep.n_leaks == int(peeks.sum()) == len(rep.leaks)
    assert {(x["column"], x["full"], x["truncated"]) for x in rep.leaks} == {("BTC/USDT", 1.0, 0.0)}
    assert all(x["cut_time"] == x["time"] for x in rep.leaks)  # exposed by the cut right after the bar
    assert rep.signal_bars == rep.signal_bars_checked == len(signal_bars(RarePeek().target(btc)))
    assert rep.leaking_times[0] in rep.summary()
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["ok"] is False and d["n_leaks"] == rep.n_leaks and d["n_cuts"] == len(rep.cuts)


def test_peeks_hidden_among_ordinary_signals_are_caught(btc) -> None:
    rep = check_lookahead(HiddenPeek(), btc)
    assert not rep.ok
    peek_times = {str(t) for t in btc.index[jumps(btc).to_numpy()]}
    # only bars before a jump leak (those where the SMA cross was not long anyway)
    assert rep.leaking_times and set(rep.leaking_times) <= peek_times


@pytest.mark.parametrize("cls", [EveryBarPeek, FullSampleNorm])
def test_peeking_everywhere_and_full_sample_normalisation_are_caught(btc, cls) -> None:
    rep = check_lookahead(cls(), btc, max_cuts=2000)
    assert not rep.ok and rep.n_leaks > 100
    assert len(rep.leaks) == min(rep.n_leaks, 1000)


def test_the_cut_budget_caps_signal_cuts_and_still_catches(btc) -> None:
    rep = check_lookahead(EveryBarPeek(), btc, max_cuts=100, n_cuts=10)
    assert rep.signal_bars > 1000 and rep.signal_bars_checked == 50
    assert len(rep.cuts) <= 100 + 10
    assert not rep.ok and "50 of" in rep.summary()


def test_a_leak_in_one_leg_of_a_pair_names_that_asset(btc, eth) -> None:
    rep = check_lookahead(PairLegPeek(), {"BTC/USDT": btc, "ETH/USDT": eth})
    assert not rep.ok
    assert {x["column"] for x in rep.leaks} == {"ETH/USDT"}
    assert set(rep.leaking_times) <= {str(t) for t in eth.index[jumps(eth).to_numpy()]}


class NeedsHistory(Strategy):
    """Refuses fewer than 200 bars, and peeks on the bars before a jump."""

    name = "needs_history_test"

    class Params(Params):
        pass

    def target(self, data, features=None):
        if len(data) < 200:
            raise ValueError(f"need 200 bars, got {len(data)}")
        return jumps(data).astype("float64").where(np.arange(len(data)) >= 199)


def test_short_cuts_the_strategy_refuses_are_skipped_and_counted_longer_ones_are_errors(btc) -> None:
    rep = check_lookahead(NeedsHistory(), btc, min_bars=300)
    assert not rep.ok and rep.skipped and all(k < 300 for k in rep.skipped)
    assert "need 200 bars" in rep.skipped_error and "short ones skipped" in rep.summary()
    assert set(rep.leaking_times) == {str(t) for t in btc.index[199:][jumps(btc).to_numpy()[199:]]}
    with pytest.raises(
        ValueError, match=r"needs_history_test.*cut after bar \d+ \(.*\): ValueError: need 200 bars"
    ):
        check_lookahead(NeedsHistory(), btc, min_bars=100)


@pytest.mark.parametrize("name", strategy_names())
def test_every_builtin_passes_at_the_default_cuts(btc, eth, name) -> None:
    cls = get_strategy(name)
    feats = None
    if name == "ml":  # the ml strategy trades on given predictions
        rng = np.random.default_rng(0)
        feats = pd.DataFrame({"prediction": rng.uniform(0, 1, len(btc))}, index=btc.index)
    data = btc if cls.assets == 1 else {"BTC/USDT": btc, "ETH/USDT": eth}
    rep = check_lookahead(cls(), data, features=feats)
    assert rep.ok, rep.summary()
    assert rep.signal_bars > 0 and rep.signal_bars_checked == min(rep.signal_bars, 5000)


def test_cli_lists_the_leaking_bars_and_writes_them_as_json(btc, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.delenv("WORKBENCH_CONFIG", raising=False)
    home = tmp_path / "home"
    runner = CliRunner()
    base = ["--config", str(ROOT / "config"), "--home", str(home)]
    r = runner.invoke(app, [*base, "init", "--sample"])
    assert r.exit_code == 0, r.output
    f = tmp_path / "peek.py"
    f.write_text(
        "from workbench.strategies import Params, Strategy\n\n\n"
        "class RarePeek(Strategy):\n"
        '    name = "rare_peek"\n\n'
        "    class Params(Params):\n"
        "        pass\n\n"
        "    def target(self, data, features=None):\n"
        '        c = data["close"]\n'
        f'        return ((c.shift(-1) / c - 1) > {JUMP}).astype("float64")\n'
    )
    args = [*base, "check", "lookahead", "--strategy", str(f), "-e", "binance", "-s", "BTC/USDT"]
    r = runner.invoke(app, [*args, "--json", str(tmp_path / "la.json")])
    assert r.exit_code == 1, r.output
    want = [str(t) for t in btc.index[jumps(btc).to_numpy()]]
    assert "LOOKAHEAD" in r.stdout and f"leaking bars ({len(want)})" in r.stdout
    assert all(t[:16] in r.stdout for t in want)
    d = json.loads((tmp_path / "la.json").read_text())
    assert [x["time"] for x in d["leaks"]] == want and d["signal_bars"] == d["signal_bars_checked"]
    r = runner.invoke(app, [*base, "check", "lookahead", "--strategy", "sma_cross", *args[-4:]])
    assert r.exit_code == 0 and "no lookahead" in r.stdout and "at all" in r.stdout
