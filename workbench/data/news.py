"""News and social feeds for the sentiment series (network and file I/O): :class:`FileSource` (CSV / JSONL,
offline), :class:`RssSource` (RSS 2.0 / Atom through ``urllib`` and ``xml.etree``) and :func:`collect_news`,
which validates, filters and dedupes; the news kept in the data folder (:func:`store_news`, :func:`load_news`,
:func:`news_summary`: ``<data>/news/<source>.parquet``, what ``workbench news import|collect|ls`` use).

Every source returns ``[time (int64 epoch ms UTC), text, source, symbol]``; score the items with a model of
:mod:`workbench.ml.sentiment` and aggregate them with :func:`workbench.features.sentiment.sentiment_series`.

>>> news = collect_news(RssSource("https://example.org/feed.xml", symbol="BTC/USDT"), since="2024-01-01")
>>> store_news("data", news)  # (added, kept) per source file
>>> load_news("data", since="2024-03-01", symbol="BTC/USDT")

Stored news: one Parquet file per source under ``<data>/news/`` with ``time`` (int64 epoch ms UTC), ``text``,
``source``, ``symbol`` (null: not about one symbol) and ``url`` (nullable), sorted by time, without duplicates
on (time, text, source, symbol): the same import again adds nothing, and one headline tagged with two symbols
stays two items. Writes go to a temporary file renamed over the old one under a lock
(``<data>/news/.lock``): a reader sees the old file or the new one, never half of one, and two writers lose
nothing. :func:`read_news_file` checks every row (a bad one is an error naming the file and the row, and
nothing is stored).
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from workbench.types import schema_problem, times_ms, to_ms

__all__ = [
    "NEWS_COLUMNS",
    "NEWS_SCHEMA_VERSION",
    "FileSource",
    "NewsError",
    "NewsSource",
    "RssSource",
    "collect_news",
    "load_news",
    "news_dir",
    "news_summary",
    "parse_feed",
    "read_news_file",
    "store_news",
]


class NewsError(ValueError):
    """Bad news input (a file, a row, a feed) or an unreadable stored news file; the message names it."""


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


def _url_error(reason: object) -> str:
    """A failed ``urlopen`` in words; a DNS failure says there is no network (it is never retried)."""
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name (no network, or a wrong URL?): {reason}; not retried"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens at that address)"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    if isinstance(reason, FileNotFoundError):
        return f"no such file: {reason.filename}"
    return f"cannot fetch: {reason}"


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
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as e:
            raise NewsError(f"{self.url}: the server answered HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise NewsError(f"{self.url}: {_url_error(e.reason)}") from None
        except TimeoutError:
            raise NewsError(f"{self.url}: no answer within {self.timeout:g} s") from None
        except OSError as e:  # a connection reset while reading
            raise NewsError(f"{self.url}: {type(e).__name__}: {e}") from None
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as e:
                raise NewsError(f"{self.url}: a damaged gzip body: {e}") from None
        try:
            df = parse_feed(data, self.source, self.symbol)
        except ET.ParseError as e:
            raise NewsError(f"{self.url}: not an RSS or Atom document ({e})") from None
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


# --------------------------------------------------------------------------------------- the data folder

_STORED: Final = ("time", "text", "source", "symbol", "url")
_KEY: Final = ["time", "text", "source", "symbol"]  # one headline about two symbols is two items


def news_dir(data_dir: str | os.PathLike[str]) -> Path:
    """Where the news of a data folder are kept: ``<data>/news/``."""
    return Path(data_dir) / "news"


def _file_name(source: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._") or "news"
    return f"{safe}.parquet"


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.Series(dtype="int64"),
            "text": pd.Series(dtype=object),
            "source": pd.Series(dtype=object),
            "symbol": pd.Series(dtype=object),
            "url": pd.Series(dtype=object),
        }
    )


def _opt_str(v: Any) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    t = str(v).strip()
    return t or None


def _bad_line(path: Path) -> str | None:
    """The first JSON Lines row that is not a JSON object, in words (None for other files or none found)."""
    import json

    name = path.name.lower().removesuffix(".gz")
    if not name.endswith((".jsonl", ".ndjson")):
        return None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        row = 0
        for line in fh:
            if not line.strip():
                continue
            row += 1
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError as e:
                return f"row {row}: not valid JSON ({e})"
            if not ok:
                return f"row {row}: not a JSON object"
    return None


def read_news_file(
    path: str | os.PathLike[str], source: str | None = None, symbol: str | None = None
) -> pd.DataFrame:
    """Every row of a CSV / JSON Lines news file (see :class:`FileSource`), checked: a row without a time or a
    text, or with a time that does not parse, is a :class:`NewsError` naming the file and the row (rows count
    from 1, the header of a CSV not included); ``symbol`` fills rows without one, ``source`` names the items
    (default: the file name). Returns ``[time, text, source, symbol, url]`` in file order, times UTC epoch ms
    (ISO times with an offset are converted; without one they are UTC)."""
    fs = FileSource(path, symbol=symbol, source=source)
    try:
        df = fs.read()
    except FileNotFoundError as e:
        raise NewsError(str(e)) from None
    except NewsError:
        raise
    except ValueError as e:  # pandas' parser: a malformed JSON line or CSV
        raise NewsError(f"{fs.path}: {_bad_line(fs.path) or e}") from None
    times = np.empty(len(df), dtype=np.int64)
    texts: list[str] = []
    for i, (t, x) in enumerate(zip(df["time"].to_numpy(dtype=object), df["text"].to_numpy(dtype=object))):
        where = f"{fs.path}: row {i + 1}"
        if _opt_str(t) is None:
            raise NewsError(f"{where}: no time")
        if isinstance(t, np.generic):
            t = t.item()
        if isinstance(t, float):  # epoch ms read as a float (a JSON column with a gap): not nanoseconds
            if not t.is_integer():
                raise NewsError(f"{where}: time {t!r} is not whole epoch milliseconds")
            t = int(t)
        try:
            times[i] = to_ms(t, what="time")
        except ValueError as e:
            raise NewsError(f"{where}: {e}") from None
        text = _opt_str(x)
        if text is None:
            raise NewsError(f"{where}: no text")
        texts.append(text)
    syms = (
        [_opt_str(v) or symbol for v in df["symbol"].to_numpy(dtype=object)]
        if "symbol" in df.columns
        else [symbol] * len(df)
    )
    if "source" in df.columns and source is None:
        srcs = [_opt_str(v) or fs.source for v in df["source"].to_numpy(dtype=object)]
    else:
        srcs = [fs.source] * len(df)
    urls = (
        [_opt_str(v) for v in df["url"].to_numpy(dtype=object)] if "url" in df.columns else [None] * len(df)
    )
    return pd.DataFrame(
        {"time": times, "text": texts, "source": srcs, "symbol": syms, "url": urls}, columns=list(_STORED)
    )


def _normalise(items: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("time", "text", "source") if c not in items.columns]
    if missing:
        raise NewsError(f"news items lack column(s) {', '.join(missing)}")
    n = len(items)
    out = pd.DataFrame(
        {
            "time": times_ms(items["time"]) if n else np.zeros(0, dtype=np.int64),
            "text": [_opt_str(v) for v in items["text"].to_numpy(dtype=object)],
            "source": [_opt_str(v) for v in items["source"].to_numpy(dtype=object)],
            "symbol": [_opt_str(v) for v in items["symbol"].to_numpy(dtype=object)]
            if "symbol" in items.columns
            else [None] * n,
            "url": [_opt_str(v) for v in items["url"].to_numpy(dtype=object)]
            if "url" in items.columns
            else [None] * n,
        },
        columns=list(_STORED),
    )
    for col in ("text", "source"):
        bad = [i for i, v in enumerate(out[col]) if v is None]
        if bad:
            raise NewsError(f"news item {bad[0] + 1}: no {col}")
    return out


@contextlib.contextmanager
def _locked(folder: Path):  # type: ignore[no-untyped-def]
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_file(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise NewsError(f"{path}: unreadable news file ({type(e).__name__}: {e}); move it away") from None
    meta = table.schema.metadata or {}
    raw = meta.get(_VERSION_KEY, b"1")  # files written before the key existed are version 1
    try:
        version = int(raw)
    except ValueError:
        raise NewsError(f"{path}: bad {_VERSION_KEY.decode()} {raw!r} in its metadata") from None
    problem = schema_problem(version, NEWS_SCHEMA_VERSION)
    if problem:
        raise NewsError(f"{path}: news {problem}")
    missing = [c for c in _STORED if c not in table.column_names]
    if missing:
        raise NewsError(f"{path}: not a news file (no {', '.join(missing)} column)")
    df = table.select(list(_STORED)).to_pandas()
    df["time"] = df["time"].astype("int64")
    for c in ("text", "source", "symbol", "url"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


NEWS_SCHEMA_VERSION = 1  # of a news file's columns, in its Parquet metadata under _VERSION_KEY
_VERSION_KEY = b"workbench.schema_version"


def _write_file(path: Path, df: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("time", pa.int64()),
            ("text", pa.string()),
            ("source", pa.string()),
            ("symbol", pa.string()),
            ("url", pa.string()),
        ],
        metadata={_VERSION_KEY: str(NEWS_SCHEMA_VERSION).encode()},
    )
    table = pa.Table.from_pandas(df[list(_STORED)], schema=schema, preserve_index=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the news from the dashboards' user
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def store_news(data_dir: str | os.PathLike[str], items: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Keep ``items`` (``time``, ``text``, ``source``, optionally ``symbol``, ``url``) under ``<data>/news/``,
    one Parquet file per source, merged with what is there and deduplicated on (time, text, source, symbol)
    (the stored row wins). Every item is checked before anything is written; each file is replaced atomically.
    Returns ``{source: (added, kept)}``: the new items and the file's total."""
    new = _normalise(items)
    folder = news_dir(data_dir)
    result: dict[str, tuple[int, int]] = {}
    with _locked(folder):
        by_file: dict[str, list[str]] = {}
        for src in dict.fromkeys(new["source"]):
            by_file.setdefault(_file_name(src), []).append(src)
        for fname, sources in by_file.items():
            path = folder / fname
            old = _read_file(path) if path.exists() else _empty()
            add = new[new["source"].isin(sources)]
            both = pd.concat([old, add], ignore_index=True) if len(old) else add.reset_index(drop=True)
            merged = both[~both.duplicated(subset=_KEY, keep="first")]
            merged = merged.sort_values(["time", "source", "text"], kind="stable").reset_index(drop=True)
            before, kept = old["source"].value_counts(), merged["source"].value_counts()
            _write_file(path, merged)
            for src in sources:
                result[src] = (int(kept.get(src, 0) - before.get(src, 0)), int(kept.get(src, 0)))
    return result


def _stored_files(data_dir: str | os.PathLike[str]) -> list[Path]:
    folder = news_dir(data_dir)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def load_news(
    data_dir: str | os.PathLike[str],
    since: Any = None,
    until: Any = None,
    symbol: str | None = None,
) -> pd.DataFrame:
    """The news kept in ``data_dir`` with ``since <= time < until`` (ISO strings, datetimes or epoch ms; None:
    unbounded), of ``symbol`` only when given: ``[time (int64 epoch ms UTC), text, source, symbol, url]``
    sorted by time (then source and text). An unreadable file is a :class:`NewsError`, never skipped."""
    lo = to_ms(since, what="since") if since is not None else None
    hi = to_ms(until, what="until") if until is not None else None
    frames = [_read_file(p) for p in _stored_files(data_dir)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty()
    df = pd.concat(frames, ignore_index=True)
    keep = np.ones(len(df), dtype=bool)
    t = df["time"].to_numpy()
    if lo is not None:
        keep &= t >= lo
    if hi is not None:
        keep &= t < hi
    if symbol is not None:
        keep &= (df["symbol"] == symbol).to_numpy()
    out = df[keep].sort_values(["time", "source", "text"], kind="stable").reset_index(drop=True)
    out["time"] = out["time"].astype("int64")
    return out


def news_summary(data_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """What is kept: one row per (source, symbol) with ``items``, ``first`` and ``last`` (epoch ms UTC);
    ``symbol`` None for items about no one symbol."""
    df = load_news(data_dir)
    cols = ["source", "symbol", "items", "first", "last"]
    if not len(df):
        return pd.DataFrame(columns=cols)
    df = df.assign(symbol=df["symbol"].astype(object).where(df["symbol"].notna(), ""))
    g = df.groupby(["source", "symbol"], sort=True)["time"].agg(["size", "min", "max"]).reset_index()
    g.columns = cols
    g["symbol"] = g["symbol"].where(g["symbol"] != "", None)
    return g
