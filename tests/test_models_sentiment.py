"""The Models page's sentiment section against real parts: a real registry holding a small TF-IDF sentiment
model fitted on the shipped tweets (``register_sentiment_model``, as ``workbench sentiment train`` stores it),
news imported into a tmp data folder with ``workbench.data.news``, and the sample candles in a real store. The
series the page draws is checked against ``sentiment_series`` computed here with the model loaded back."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import pytest

from workbench.data.files import import_candles
from workbench.data.news import read_news_file, store_news
from workbench.data.store import Store
from workbench.features.sentiment import sentiment_series
from workbench.metricdefs import format_metric
from workbench.ml.registry import Registry
from workbench.ml.sentiment import evaluate, load_dataset, make_model, register_sentiment_model
from workbench.panels import models
from workbench.viz.sentiment import sentiment_price_figure

ROOT = Path(__file__).resolve().parents[1]
NAME = "sentiment-tfidf"

HEADLINES = [
    "Bitcoin surges to a record high as ETF inflows jump",
    "Crypto markets plunge after exchange hack",
    "Analysts bullish on BTC as miners hold",
    "Bitcoin falls as regulators crack down on exchanges",
    "BTC price steady ahead of the Fed decision",
    "Traders cheer as bitcoin rallies above resistance",
    "Liquidations mount as bitcoin drops sharply",
    "Bitcoin gains on strong institutional demand",
]


def _text(w: Any) -> str:
    out = [html.unescape(w.value)] if isinstance(w, W.HTML) else []
    for c in getattr(w, "children", ()) or ():
        out.append(_text(c))
    return "\n".join(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sentiment-page")
    data = root / "data"
    import_candles(Store(data), ROOT / "data/sample/binance/BTCUSDT_1h.csv.gz", "binance", "BTC/USDT", "1h")
    reg = Registry(data / "models")
    tr, va = load_dataset("train", n=400), load_dataset("valid", n=200)
    m = make_model("tfidf").fit(tr["text"], tr["label"])
    metrics = {"valid": evaluate(m, va["text"], va["label"]), "test": evaluate(m, tr["text"], tr["label"])}
    v1 = register_sentiment_model(reg, NAME, m, tr, metrics=metrics)
    v2 = register_sentiment_model(reg, NAME, make_model("tfidf").fit(tr["text"][:200], tr["label"][:200]), tr)
    # 24 headlines over 2024-03-01 .. 2024-03-03, two in most bars, and two about ETH
    rows = [
        {
            "time": f"2024-03-0{1 + i // 10}T{(i % 10) // 2 * 4:02d}:{(i * 7) % 60:02d}:00Z",
            "text": HEADLINES[i % 8],
        }
        for i in range(24)
    ] + [{"time": "2024-03-02T12:00:00Z", "text": "Ether rallies", "symbol": "ETH/USDT"}] * 2
    f = root / "headlines.jsonl"
    pd.DataFrame(rows).to_json(f, orient="records", lines=True)
    store_news(data, read_news_file(f, symbol="BTC/USDT", source="wire"))
    return {"data": data, "registry": reg, "v1": v1, "v2": v2, "metrics": metrics, "news": f}


def test_the_page_lists_registry_sentiment_models_with_their_metrics(world) -> None:
    p = models.ModelsPanel(world["data"], world["data"] / "models")
    table = p.sentiment_out.children[0].value
    text = html.unescape(table)
    va, te = world["metrics"]["valid"], world["metrics"]["test"]
    for want in (
        NAME,
        world["v1"],
        world["v2"],
        format_metric("accuracy", va["accuracy"]),
        format_metric("macro_f1", va["macro_f1"]),
        format_metric("accuracy", te["accuracy"]),
        format_metric("macro_f1", te["macro_f1"]),
    ):
        assert want in text
    assert "nan" not in html.unescape(p.table.value)  # a sentiment model has no target, symbol or timeframe
    # nothing promoted: the latest version draws the series
    assert p.sentiment_model.value == ("registry", NAME, world["v2"])
    # the price-model chooser does not predict with a sentiment model
    p.chooser.value = (NAME, world["v1"])
    p.predict()
    assert "is a sentiment model" in _text(p.predict_out)


def test_sentiment_beside_price_draws_the_close_and_the_per_bar_series(world) -> None:
    reg: Registry = world["registry"]
    reg.promote(NAME, world["v1"])
    p = models.ModelsPanel(world["data"], world["data"] / "models")
    assert p.sentiment_model.value == ("registry", NAME, world["v1"])  # the promoted version
    assert p.sentiment_symbol.options == ("BTC/USDT", "ETH/USDT") and p.sentiment_symbol.value == "BTC/USDT"
    model, _ = reg.load_artifact(NAME, world["v1"], kind="sentiment")
    news = read_news_file(world["news"], symbol="BTC/USDT")
    want = sentiment_series(news, model, "1h", symbol="BTC/USDT")
    got = p.sentiment_frame
    pd.testing.assert_frame_equal(got, want)
    assert int(got["count"].sum()) == 24 and (got["count"] > 1).any()
    fig = p.figures["sentiment"]
    close, bars, counts = fig.data
    candles = Store(world["data"]).candles("binance", "BTC/USDT", "1h", "2024-03-01", "2024-03-03T08:00:00Z")
    # the close over the news span: the bar of the first item .. the bar of the last one
    first, last = news["time"].min(), news["time"].max()
    span = candles[(candles.index >= pd.Timestamp(first // 3_600_000 * 3_600_000, unit="ms", tz="UTC"))
                   & (candles.index <= pd.Timestamp(last, unit="ms", tz="UTC"))]  # fmt: skip
    np.testing.assert_allclose(np.asarray(close.y, dtype=float), span["close"].to_numpy())
    assert list(close.x) == list(span.index.strftime("%Y-%m-%d %H:%M"))
    np.testing.assert_allclose(np.asarray(bars.y, dtype=float), want["score"].to_numpy())
    assert list(bars.x) == list(want.index.strftime("%Y-%m-%d %H:%M"))
    np.testing.assert_array_equal(np.asarray(counts.y, dtype=float), want["count"].to_numpy(dtype=float))
    assert (close.xaxis, bars.xaxis, counts.xaxis) == ("x", "x2", "x2")
    assert fig.layout.xaxis2.type == "date" and fig.layout.xaxis.type == "date"
    assert "24 items of BTC/USDT" in _text(p.sentiment_plot)
    # another symbol: its own items only
    p.sentiment_symbol.value = "ETH/USDT"
    assert p.sentiment_frame is None  # no ETH candles stored
    assert "No stored 1h candles of ETH/USDT over its news span" in _text(p.sentiment_plot)


def test_the_figure_is_pure_and_shares_its_time_axis() -> None:
    idx = pd.date_range("2024-03-01", periods=4, freq="1h", tz="UTC", name="time")
    close = pd.Series([1.0, 2.0, 3.0, 4.0], index=idx)
    series = pd.DataFrame({"score": [0.5, -0.25], "count": [2, 1]}, index=idx[[1, 3]])
    fig = sentiment_price_figure(close, series)
    assert [t.type for t in fig.data] == ["scatter", "bar", "scatter"]
    assert fig.data[1].marker.color == ("#2ca02c", "#d62728")  # above / below zero
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"  # one time axis


def test_empty_states_in_words(world, tmp_path: Path) -> None:
    def page(data: Path) -> models.ModelsPanel:
        return models.ModelsPanel(data, data / "models")

    # no model at all
    assert "No sentiment model" in _text(page(tmp_path / "none").sentiment_out)
    # a model but no news
    bare = tmp_path / "bare"
    tr = load_dataset("train", n=200)
    register_sentiment_model(
        Registry(bare / "models"), NAME, make_model("tfidf").fit(tr["text"], tr["label"]), tr
    )
    assert "No news stored" in _text(page(bare).sentiment_out)
    # news but no candles over its span (stored candles end in 2024-09)
    later = pd.DataFrame({"time": ["2030-01-01T00:00:00Z"], "text": ["bitcoin rallies"], "source": ["x"],
                          "symbol": ["BTC/USDT"]})  # fmt: skip
    import_candles(Store(bare), ROOT / "data/sample/binance/BTCUSDT_1h.csv.gz", "binance", "BTC/USDT", "1h")
    store_news(bare, later)
    p = page(bare)
    assert "No stored 1h candles of BTC/USDT over its news span (2030-01-01T00:00:00Z" in _text(
        p.sentiment_out
    )


def test_an_older_joblib_model_is_listed_and_can_draw(world, tmp_path: Path) -> None:
    data = tmp_path / "d"
    import_candles(Store(data), ROOT / "data/sample/binance/BTCUSDT_1h.csv.gz", "binance", "BTC/USDT", "1h")
    tr = load_dataset("train", n=200)
    make_model("tfidf").fit(tr["text"], tr["label"]).save(data / "sentiment" / "tfidf.joblib")
    store_news(data, read_news_file(world["news"], symbol="BTC/USDT", source="wire"))
    p = models.ModelsPanel(data, data / "models")
    assert "tfidf.joblib" in _text(p.sentiment_out)
    assert p.sentiment_model.value[0] == "file" and p.sentiment_frame is not None
    assert int(p.sentiment_frame["count"].sum()) == 24
