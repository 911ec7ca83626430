"""Typed, frozen config: unknown keys name the file and key with a hint; env overrides; secrets refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from workbench.config import ConfigError, load_settings
from workbench.data.exchanges import ExchangeSetupError, make_exchange

ROOT = Path(__file__).resolve().parent.parent


def cfg(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "config"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_project_config_loads_and_is_frozen() -> None:
    s = load_settings(ROOT / "config", env={})
    assert s.collect.page_limit == 1000
    assert s.trading.mode == "paper" and s.ml.torch_threads == 1
    assert s.data_dir == ROOT / "data"
    with pytest.raises(ValidationError):
        s.collect.page_limit = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        (
            "workbench.yml",
            "collect:\n  page_limt: 5\n",
            "collect.page_limt: unknown key (did you mean 'collect.page_limit'?)",
        ),
        ("workbench.yml", "colect: {}\n", "colect: unknown key (did you mean 'collect'?)"),
        (
            "workbench.yml",
            "exchanges:\n  binance:\n    sandbx: true\n",
            "exchanges.binance.sandbx: unknown key (did you mean 'exchanges.binance.sandbox'?)",
        ),
        (
            "workbench.yml",
            "collect:\n  page_limit: many\n",
            "collect.page_limit: Input should be a valid integer",
        ),
        (
            "trading.yml",
            "risk:\n  max_drawdwn: 0.1\n",
            "risk.max_drawdwn: unknown key (did you mean 'risk.max_drawdown'?)",
        ),
        ("ml.yml", "device: tpu\n", "device: Input should be 'cpu', 'cuda' or 'auto'"),
        ("security.yml", "master_key: x\n", "master_key: unknown key (did you mean 'master_key_env'?)"),
        ("workbench.yml", "- a\n- b\n", "the top level must be a mapping"),
        ("workbench.yml", "collect: [\n", "invalid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, file, text, expected) -> None:
    d = cfg(tmp_path, {file: text})
    with pytest.raises(ConfigError) as e:
        load_settings(d, env={})
    assert str(d / file) in str(e.value)
    assert expected in str(e.value)


def test_env_overrides(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "collect:\n  page_limit: 10\n"})
    env = {
        "WORKBENCH__COLLECT__PAGE_LIMIT": "20",
        "WORKBENCH__TRADING__RISK__MAX_DRAWDOWN": "0.1",
        "WORKBENCH__EXCHANGES__KRAKEN__CCXT__TIMEOUT": "1234",
        "WORKBENCH_HOME": str(tmp_path / "home"),
    }
    s = load_settings(d, env=env)
    assert s.collect.page_limit == 20
    assert s.trading.risk.max_drawdown == 0.1
    assert s.exchange("kraken").ccxt == {"timeout": 1234}
    assert s.data_dir == (tmp_path / "home").resolve()
    with pytest.raises(
        ConfigError,
        match=r"environment variable WORKBENCH__COLLECT__PAGE_LIMT: collect.page_limt: unknown key \(did you mean 'collect.page_limit'\?\)",
    ):
        load_settings(d, env={"WORKBENCH__COLLECT__PAGE_LIMT": "1"})
    with pytest.raises(ConfigError, match=r"unknown section 'COLECT' \(did you mean 'collect'\?\)"):
        load_settings(d, env={"WORKBENCH__COLECT__PAGE_LIMIT": "1"})


def test_relative_data_path_resolves_against_project_root(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "paths:\n  data: store-here\n"})
    assert load_settings(d, env={}).data_dir == tmp_path / "store-here"
    assert load_settings(d / "workbench.yml", env={}).config_dir == d


def test_credentials_are_refused_in_files_and_read_from_env(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binance:\n    ccxt:\n      apiKey: abc\n"})
    with pytest.raises(ConfigError, match="credential: API keys come only from the environment"):
        load_settings(d, env={})
    s = load_settings(cfg(tmp_path, {"workbench.yml": "{}\n"}), env={})
    ex = make_exchange(
        s,
        "binance",
        with_credentials=True,
        env={"WORKBENCH_BINANCE_API_KEY": "k", "WORKBENCH_BINANCE_SECRET": "s"},
    )
    assert ex.apiKey == "k" and ex.secret == "s"
    assert make_exchange(s, "binance").apiKey in (None, "")


def test_ccxt_options_are_checked_and_urls_pointed_elsewhere(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binance:\n    ccxt:\n      timeot: 5\n"})
    with pytest.raises(
        ExchangeSetupError,
        match=r"exchanges.binance.ccxt.timeot: not an option of ccxt.binance \(did you mean 'timeout'\?\)",
    ):
        make_exchange(load_settings(d, env={}), "binance")
    with pytest.raises(ExchangeSetupError, match=r"unknown exchange 'binanse' \(did you mean 'binance'"):
        make_exchange(load_settings(d, env={}), "binanse")
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binance:\n    base_url: http://127.0.0.1:9\n"})
    ex = make_exchange(
        load_settings(d, env={"WORKBENCH__EXCHANGES__BINANCE__CCXT__ENABLERATELIMIT": "false"}), "binance"
    )
    assert ex.enableRateLimit is False
    flat = []

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, str) and "://" in v:
            flat.append(v)

    walk(ex.urls["api"])
    assert flat and all("127.0.0.1:9" in u for u in flat)
