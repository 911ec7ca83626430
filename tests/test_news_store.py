"""News kept in the data folder: ``workbench news import|collect|ls`` as a user runs them (subprocesses) and
:func:`workbench.data.news.load_news`, over real files, a real Parquet folder and a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from workbench.data.news import (
    NEWS_SCHEMA_VERSION,
    NewsError,
    load_news,
    news_summary,
    read_news_file,
    store_news,
)
from workbench.types import to_ms

WB = [sys.executable, "-m", "workbench.cli"]


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("WORKBENCH_CONFIG", None)
    p = subprocess.run([*WB, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


CSV = """time,text,symbol,url
2024-03-01T00:30:00Z,Bitcoin ETF inflows hit a record,,https://example.org/1
2024-03-01T03:15:00+02:00,"Exchange halts withdrawals, users worried",,
1709258400000,Ether upgrade date set,ETH/USDT,
"""


def test_import_keeps_utc_items_and_dedupes_on_time_text_source_symbol(tmp_path: Path) -> None:
    home, f = tmp_path / "data", tmp_path / "headlines.csv"
    f.write_text(CSV)
    p = run(home, "news", "import", str(f), "--symbol", "BTC/USDT", "--source", "wire")
    assert "wire: 3 new item(s), 3 kept" in p.stdout
    df = load_news(home)
    assert list(df.columns) == ["time", "text", "source", "symbol", "url"]
    assert df["time"].tolist() == [
        to_ms("2024-03-01T00:30:00Z"),
        to_ms("2024-03-01T01:15:00Z"),  # +02:00 converted to UTC
        1709258400000,
    ]
    assert df["symbol"].tolist() == ["BTC/USDT", "BTC/USDT", "ETH/USDT"]  # --symbol fills the empty ones only
    assert df["source"].tolist() == ["wire"] * 3
    assert df["url"].tolist() == ["https://example.org/1", None, None]
    # the same file again, and one more headline: only the new one is added
    f.write_text(CSV + "2024-03-02T10:00:00Z,Funding rates flip negative,,\n")
    p = run(home, "news", "import", str(f), "--symbol", "BTC/USDT", "--source", "wire")
    assert "wire: 1 new item(s), 4 kept" in p.stdout and "3 item(s) already kept" in p.stdout
    # the same text at the same time from another source is another item
    store_news(home, df.assign(source="other").iloc[:1])
    assert len(load_news(home)) == 5
    # and one headline about two symbols is two items (a reimport with another --symbol adds them)
    f.write_text("time,text\n2024-03-01T00:30:00Z,Bitcoin ETF inflows hit a record\n")
    assert (
        "wire: 1 new item(s), 5 kept"
        in run(home, "news", "import", str(f), "-s", "ETH/USDT", "--source", "wire").stdout
    )
    store_news(home, load_news(home))  # everything again: nothing new
    assert len(load_news(home)) == 6
    rows = json.loads(run(home, "news", "ls", "--json").stdout)
    assert rows == [
        {"source": "other", "symbol": "BTC/USDT", "items": 1, "first": "2024-03-01T00:30:00Z",
         "last": "2024-03-01T00:30:00Z"},
        {"source": "wire", "symbol": "BTC/USDT", "items": 3, "first": "2024-03-01T00:30:00Z",
         "last": "2024-03-02T10:00:00Z"},
        {"source": "wire", "symbol": "ETH/USDT", "items": 2, "first": "2024-03-01T00:30:00Z",
         "last": "2024-03-01T02:00:00Z"},
    ]  # fmt: skip
    assert "wire" in run(home, "news", "ls").stdout


def test_load_news_filters_by_window_and_symbol(tmp_path: Path) -> None:
    f = tmp_path / "n.jsonl"
    f.write_text(
        "\n".join(
            json.dumps({"time": f"2024-03-0{d}T12:00:00Z", "text": f"day {d}", "symbol": s})
            for d in (1, 2, 3)
            for s in ("BTC/USDT", "ETH/USDT")
        )
        + "\n"
    )
    store_news(tmp_path / "d", read_news_file(f))
    got = load_news(tmp_path / "d", since="2024-03-02", until="2024-03-03T12:00:00Z", symbol="BTC/USDT")
    assert got["text"].tolist() == ["day 2"]  # since inclusive, until exclusive
    assert len(load_news(tmp_path / "d", since="2024-03-02T12:00:00Z")) == 4
    assert len(load_news(tmp_path / "empty")) == 0 and list(load_news(tmp_path / "empty").columns)[:2] == [
        "time",
        "text",
    ]
    assert news_summary(tmp_path / "d")["items"].tolist() == [3, 3]


@pytest.mark.parametrize(
    ("body", "row", "what"),
    [
        ("time,text\n2024-03-01,ok\nnot a time,bad\n", 2, "invalid time 'not a time'"),
        ("time,text\n2024-03-01,ok\n2024-03-02,ok too\n2024-03-03,\n", 3, "no text"),
        ("time,text\n,no time here\n", 1, "no time"),
    ],
)
def test_a_bad_row_names_file_and_row_and_nothing_is_written(tmp_path: Path, body, row, what) -> None:
    home, f = tmp_path / "data", tmp_path / "bad.csv"
    good = tmp_path / "good.csv"
    good.write_text("time,text\n2024-02-01,kept before\n")
    run(home, "news", "import", str(good), "--source", "bad.csv")
    before = (home / "news" / "bad.csv.parquet").read_bytes()
    f.write_text(body)
    p = run(home, "news", "import", str(f), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"{f}: row {row}: {what}" in " ".join(p.stderr.split())
    assert (home / "news" / "bad.csv.parquet").read_bytes() == before  # nothing of the bad file kept
    assert sorted(x.name for x in (home / "news").iterdir()) == [".lock", "bad.csv.parquet"]


def test_a_malformed_json_line_is_named(tmp_path: Path) -> None:
    f = tmp_path / "n.jsonl"
    f.write_text('{"time": "2024-03-01", "text": "a"}\n{"time": "2024-03-02", "text": \n')
    with pytest.raises(NewsError, match=r"n\.jsonl: row 2: not valid JSON"):
        read_news_file(f)


def test_an_unreadable_stored_file_is_an_error_not_data(tmp_path: Path) -> None:
    (tmp_path / "news").mkdir()
    (tmp_path / "news" / "x.parquet").write_bytes(b"PAR1 half a file")
    with pytest.raises(NewsError, match=r"x\.parquet: unreadable news file"):
        load_news(tmp_path)


def test_a_news_file_from_a_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    """News files carry their schema version in the Parquet metadata; a newer one is an error naming the file,
    and one written before the key existed reads as version 1."""
    import pyarrow.parquet as pq

    items = pd.DataFrame({"time": [to_ms("2024-03-01")], "text": ["BTC rallies"], "source": ["desk"]})
    store_news(tmp_path, items)
    (path,) = (tmp_path / "news").glob("*.parquet")
    table = pq.read_table(path)
    assert table.schema.metadata[b"workbench.schema_version"] == str(NEWS_SCHEMA_VERSION).encode()
    pq.write_table(table.replace_schema_metadata({}), path)  # as stored before the version key
    assert list(load_news(tmp_path)["text"]) == ["BTC rallies"]
    newer = {b"workbench.schema_version": str(NEWS_SCHEMA_VERSION + 1).encode()}
    pq.write_table(table.replace_schema_metadata(newer), path)
    with pytest.raises(
        NewsError, match=rf"{path.name}: news schema_version {NEWS_SCHEMA_VERSION + 1}.*upgrade"
    ):
        load_news(tmp_path)


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>BTC breaks out above resistance</title><link>https://e.org/a</link>
<pubDate>Fri, 01 Mar 2024 10:00:00 +0100</pubDate></item>
<item><title>Miners sell as fees collapse</title><pubDate>Sat, 02 Mar 2024 08:00:00 GMT</pubDate></item>
</channel></rss>"""


@pytest.fixture
def feed_server(tmp_path: Path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "feed.xml").write_text(RSS)
    (tmp_path / "www" / "page.html").write_text("<html><body><p>not a feed</body></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_collect_a_feed_over_http_and_again_keeps_it_once(tmp_path: Path, feed_server: str) -> None:
    home = tmp_path / "data"
    p = run(
        home, "news", "collect", "--feed", f"{feed_server}/feed.xml", "--source", "feed", "-s", "BTC/USDT"
    )
    assert "feed: 2 new item(s), 2 kept" in p.stdout
    p = run(
        home, "news", "collect", "--feed", f"{feed_server}/feed.xml", "--source", "feed", "-s", "BTC/USDT"
    )
    assert "feed: 0 new item(s), 2 kept" in p.stdout
    df = load_news(home)
    assert df["time"].tolist() == [to_ms("2024-03-01T09:00:00Z"), to_ms("2024-03-02T08:00:00Z")]
    assert df["url"].tolist() == ["https://e.org/a", None] and set(df["symbol"]) == {"BTC/USDT"}
    # a file:// feed works offline
    (tmp_path / "f.xml").write_text(RSS.replace("Miners", "Whales"))
    p = run(
        home, "news", "collect", "--feed", (tmp_path / "f.xml").as_uri(), "--source", "feed", "-s", "BTC/USDT"
    )
    assert "feed: 1 new item(s), 3 kept" in p.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("closed", "connection refused"),
        ("/missing.xml", "HTTP 404"),
        ("/page.html", "not an RSS or Atom document"),
    ],
)
def test_collect_errors_in_words_and_keeps_nothing(tmp_path: Path, feed_server: str, path, said) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/feed.xml" if path == "closed" else feed_server + path
    p = run(tmp_path / "data", "news", "collect", "--feed", url, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert said in p.stderr and url in " ".join(p.stderr.split())
    assert not list((tmp_path / "data").glob("news/*.parquet"))


def test_an_unresolvable_host_fails_at_once_saying_so(tmp_path: Path) -> None:
    p = run(tmp_path / "data", "news", "collect", "--feed", "http://feed.invalid/rss", check=False)
    assert p.returncode == 1 and "cannot resolve the host name" in p.stderr and "not retried" in p.stderr


WRITER = """
import sys, pandas as pd
from workbench.data.news import store_news
n = int(sys.argv[2])
i = 0
while True:
    items = pd.DataFrame({"time": range(i * n, (i + 1) * n), "text": [f"item {k}" for k in range(i * n, (i + 1) * n)],
                          "source": "s"})
    store_news(sys.argv[1], items)
    print(i, flush=True)
    i += 1
"""


def test_a_writer_killed_mid_write_leaves_the_last_complete_file(tmp_path: Path) -> None:
    """SIGKILL a process that keeps appending batches: the kept file is always a whole earlier state."""
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), "20000"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        for _ in range(3):  # three whole batches written, the fourth (or later) one under way
            assert p.stdout is not None and p.stdout.readline()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    df = load_news(tmp_path)
    n = len(df)
    assert n >= 3 * 20000 and n % 20000 == 0
    assert df["time"].tolist() == list(range(n))
    tmp_left = [x.name for x in (tmp_path / "news").iterdir() if x.name.endswith(".tmp")]
    # a temporary file of the killed write may be left; it is never read as news
    assert all(x.startswith(".s.parquet.") for x in tmp_left)
    store_news(tmp_path, pd.DataFrame({"time": [n], "text": ["after"], "source": ["s"]}))
    assert len(load_news(tmp_path)) == n + 1
