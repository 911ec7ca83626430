"""News and social feeds for the sentiment series (network and file I/O): :class:`FileSource` (CSV / JSONL,
offline), :class:`RssSource` (RSS 2.0 / Atom through ``urllib`` and ``xml.etree``) and :func:`collect_news`,
which validates, filters and dedupes.

Every source returns ``[time (int64 epoch ms UTC), text, source, symbol]``; score the items with a model of
:mod:`workbench.ml.sentiment` and aggregate them with :func:`workbench.features.sentiment.sentiment_series`.

>>> news = collect_news(RssSource("https://example.org/feed.xml", symbol="BTC/USDT"), since="2024-01-01")
"""

from __future__ import annotations

import email.utils
import gzip
import os
import re
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from workbench.types import times_ms, to_ms

__all__ = ["NEWS_COLUMNS", "FileSource", "NewsSource", "RssSource", "collect_news", "parse_feed"]

NEWS_COLUMNS: Final = ("time", "text", "source", "symbol")


@runtime_checkable
class NewsSource(Protocol):
    """A news or social feed: ``fetch(since, until)`` returns the items with ``since <= time < until`` as a
    DataFrame ``[time (int64 epoch ms UTC), text, source, symbol]`` (symbol may be None)."""

    def fetch(self, since: Any, until: Any) -> pd.DataFrame: ...


def _news_frame(df: pd.DataFrame, source: str, symbol: str | None, since: Any, until: Any) -> pd.DataFrame:
    if len(df) == 0:
        return pd.DataFrame(
            {
                "time": pd.Series(dtype="int64"),
                "text": pd.Series(dtype=object),
                "source": pd.Series(dtype=object),
                "symbol": pd.Series(dtype=object),
            }
        )
    out = pd.DataFrame(
        {
            "time": times_ms(df["time"]),
            "text": [str(t).strip() for t in df["text"]],
            "source": (
                df["source"]
                .where(df["source"].notna() & (df["source"].astype(str) != ""), source)
                .astype(str)
                if "source" in df.columns
                else source
            ),
            "symbol": df["symbol"].to_numpy(dtype=object) if "symbol" in df.columns else symbol,
        }
    )
    if symbol is not None and "symbol" in df.columns:
        out["symbol"] = out["symbol"].where(out["symbol"].notna() & (out["symbol"] != ""), symbol)
    for extra in ("url",):
        if extra in df.columns:
            out[extra] = df[extra].to_numpy(dtype=object)
    lo = to_ms(since, what="since") if since is not None else None
    hi = to_ms(until, what="until") if until is not None else None
    keep = np.ones(len(out), dtype=bool)
    if lo is not None:
        keep &= out["time"].to_numpy() >= lo
    if hi is not None:
        keep &= out["time"].to_numpy() < hi
    return out[keep & (out["text"] != "")].sort_values("time", kind="stable").reset_index(drop=True)


_TIME_ALIASES: Final = ("time", "timestamp", "published", "date", "created_at")
_TEXT_ALIASES: Final = ("text", "title", "headline")


class FileSource:
    """Items from a local CSV or JSON Lines file (``.csv``, ``.jsonl``, ``.ndjson``, optionally ``.gz``).

    Columns: a time (``time``, ``timestamp``, ``published``, ``date`` or ``created_at``: epoch ms or ISO 8601,
    naive = UTC), a text (``text``, ``title`` or ``headline``), optionally ``source``, ``symbol`` and ``url``.
    ``symbol`` fills items without one; ``source`` names items without one (default: the file name).
    """

    def __init__(
        self, path: str | os.PathLike[str], symbol: str | None = None, source: str | None = None
    ) -> None:
        self.path = Path(path)
        self.symbol = symbol
        self.source = source or self.path.name

    def read(self) -> pd.DataFrame:
        name = self.path.name.lower().removesuffix(".gz")
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: news file not found")
        if name.endswith(".csv"):
            df = pd.read_csv(self.path, keep_default_na=False, na_values={"symbol": [""]})
        elif name.endswith((".jsonl", ".ndjson", ".json")):
            df = pd.read_json(
                self.path,
                lines=not name.endswith(".json"),
                dtype=False,
                compression="gzip" if self.path.suffix == ".gz" else None,
            )
        else:
            raise ValueError(f"{self.path}: unsupported news file (use .csv or .jsonl, optionally .gz)")
        cols = {c.lower(): c for c in df.columns}
        tcol = next((cols[a] for a in _TIME_ALIASES if a in cols), None)
        xcol = next((cols[a] for a in _TEXT_ALIASES if a in cols), None)
        if tcol is None or xcol is None:
            raise ValueError(
                f"{self.path}: need a time column ({'/'.join(_TIME_ALIASES)}) and a text column "
                f"({'/'.join(_TEXT_ALIASES)}); found {list(df.columns)}"
            )
        return df.rename(columns={tcol: "time", xcol: "text"})

    def fetch(self, since: Any = None, until: Any = None) -> pd.DataFrame:
        return _news_frame(self.read(), self.source, self.symbol, since, until)

    def __repr__(self) -> str:
        return f"FileSource({str(self.path)!r})"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _child_text(el: ET.Element, *names: str) -> str | None:
    for child in el:
        if _local(child.tag) in names:
            if _local(child.tag) == "link" and child.get("href"):
                return child.get("href")
            if child.text and child.text.strip():
                return child.text.strip()
    return None


def _strip_html(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", s)).strip()


def _feed_time(s: str) -> int | None:
    try:
        dt = email.utils.parsedate_to_datetime(s)  # RFC 822 (RSS pubDate)
        return to_ms(pd.Timestamp(dt))
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return to_ms(s)  # ISO 8601 (Atom, dc:date)
    except ValueError:
        return None


def parse_feed(data: bytes | str, source: str = "rss", symbol: str | None = None) -> pd.DataFrame:
    """Items of an RSS 2.0 or Atom document as ``[time, text, source, symbol, url]`` (text = the title, or the
    description without HTML when there is no title). Items without a parseable date are skipped."""
    raw = data.encode() if isinstance(data, str) else data
    if b"<!ENTITY" in raw[:4096].upper():
        raise ValueError(f"{source}: feeds with entity declarations are refused")
    root = ET.fromstring(raw)
    rows = []
    for el in root.iter():
        if _local(el.tag) not in ("item", "entry"):
            continue
        when = _child_text(el, "pubdate", "published", "updated", "date")
        t = _feed_time(when) if when else None
        text = _child_text(el, "title") or _strip_html(_child_text(el, "description", "summary") or "")
        if t is None or not text:
            continue
        rows.append({"time": t, "text": _strip_html(text), "url": _child_text(el, "link", "guid")})
    df = pd.DataFrame(rows, columns=["time", "text", "url"])
    return _news_frame(df, source, symbol, None, None)


class RssSource:
    """Headlines of an RSS 2.0 / Atom feed fetched with ``urllib`` (``http(s)://`` or ``file://`` URLs).

    A feed holds only its latest items: call :func:`collect_news` regularly and keep what it returns.
    """

    def __init__(
        self, url: str, symbol: str | None = None, source: str | None = None, timeout: float = 20.0
    ) -> None:
        scheme = urllib.parse.urlparse(url).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(f"unsupported feed URL {url!r}: use http(s):// or file://")
        self.url, self.symbol, self.timeout = url, symbol, timeout
        self.source = (
            source or urllib.parse.urlparse(url).netloc or Path(urllib.parse.urlparse(url).path).name
        )

    def fetch(self, since: Any = None, until: Any = None) -> pd.DataFrame:
        req = urllib.request.Request(self.url, headers={"User-Agent": "workbench-news/0.1"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            data = resp.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        df = parse_feed(data, self.source, self.symbol)
        return _news_frame(df, self.source, self.symbol, since, until)

    def __repr__(self) -> str:
        return f"RssSource({self.url!r})"


def collect_news(source: NewsSource, since: Any = None, until: Any = None) -> pd.DataFrame:
    """Fetch ``[since, until)`` from ``source``: checked columns, int64 ms times, sorted, without duplicates
    (same time, text and symbol) and without items outside the window."""
    df = source.fetch(since, until)
    missing = [c for c in NEWS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source!r} returned no {', '.join(missing)} column(s)")
    out = _news_frame(df, str(getattr(source, "source", "news")), None, since, until)
    key = out["symbol"].astype(str)
    return out[~pd.DataFrame({"t": out["time"], "x": out["text"], "s": key}).duplicated()].reset_index(
        drop=True
    )
