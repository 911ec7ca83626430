"""The Models page: the model registry (every version with its out-of-sample metrics beside its baselines,
and its lineage: the data it was trained on with its hash, the code version, the validation, the promotion
log), a model's predictions beside the realised outcomes, and sentiment beside price.

Predictions are computed on demand ("Predict" button, so the page opens without loading torch models): the
version is loaded with :class:`workbench.ml.predict.PredictionService` and scores the last ``bars`` stored
candles of the market it was trained on (``meta["data"]``), the same pipeline the live engine uses; the realised
outcome at bar ``t`` is what the model predicts there: the move over its horizon
(:func:`workbench.features.forward_returns`; up = 1 / down = 0 for a ``direction`` model, the log return for a
``return`` model), so the last ``horizon`` bars have none yet. Without stored candles of that market, an empty
state says so.

Sentiment: the registry's sentiment models (kind ``sentiment``, ``sentiment-<model>`` as ``workbench sentiment
train`` registers them; their validation and test accuracy and macro-F1) and the older
``<data>/sentiment/*.joblib`` files; with news kept under ``<data>/news/`` (``workbench news import|collect``)
the chosen symbol's stored close over its news span beside the per-bar sentiment of those items
(:func:`workbench.features.sentiment.sentiment_series` with the promoted, else latest, version: an item counts in
the bar that holds its time). Empty states say what is missing: a model, news, candles over the news span.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.config import Settings, load_settings
from workbench.metricdefs import format_metric
from workbench.panels._research import data_dir, empty_state, error_state, table_html
from workbench.panels.common import figure_widget

__all__ = ["ModelsPanel", "page", "realised_outcome"]

DEFAULT_BARS = 500


def realised_outcome(close: pd.Series, horizon: int, target: str) -> pd.Series:
    """What happened over the ``horizon`` bars after each bar, in the target's units (NaN where not yet known):
    ``direction`` 1.0 for an up move (forward return > 0) else 0.0, ``return`` the forward log return."""
    from workbench.features import forward_returns

    fwd = forward_returns(close, horizon)
    if target == "direction":
        out = (fwd > 0).astype("float64").where(fwd.notna())
    elif target == "return":
        out = pd.Series(
            pd.Series(fwd).map(lambda v: math.log1p(v) if pd.notna(v) else float("nan")), index=fwd.index
        )
    else:
        raise ValueError(f"unknown target {target!r}; targets: direction, return")
    return pd.Series(out.to_numpy(dtype="float64"), index=close.index, name="realised")


def _cell(v: Any) -> str:
    """A registry listing's text cell: missing (None, NaN) is blank."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _num(key: str, v: Any) -> str:
    return format_metric(key, v)


class ModelsPanel:
    """The page's state (``widget`` is the page)."""

    def __init__(self, data: Path, registry_dir: Path, bars: int = DEFAULT_BARS) -> None:
        from workbench.ml.registry import Registry

        self.data = Path(data)
        self.registry = Registry(registry_dir)
        self.bars = int(bars)
        self.prediction: pd.Series | None = None
        self.realised: pd.Series | None = None
        self.figures: dict[str, Any] = {}
        self.table = W.HTML()
        self.chooser = W.Dropdown(description="Model", layout=W.Layout(width="520px"))
        self.details = W.VBox()
        self.predict_button = W.Button(description="Predict", icon="line-chart")
        self.predict_button.on_click(lambda _: self.predict())
        self.predict_out = W.VBox()
        self.sentiment_out = W.VBox()
        self._sentiment_cache: dict[tuple[str, str, str], Any] = {}
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.chooser.observe(lambda ch: self.show(ch["new"]), names="value")
        self.widget = W.VBox(
            [
                W.HTML("<h2>Models</h2>"),
                self.refresh_button,
                W.HTML("<h4>Registry</h4>"),
                self.table,
                self.chooser,
                self.details,
                W.HTML("<h4>Predictions beside realised outcomes</h4>"),
                self.predict_button,
                self.predict_out,
                W.HTML("<h4>Sentiment beside price</h4>"),
                self.sentiment_out,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        try:
            ls = self.registry.ls()
        except (OSError, ValueError) as e:
            self.table.value = error_state(f"registry {self.registry.root}: {e}").value
            ls = pd.DataFrame()
        self.rows = ls
        if not len(ls):
            self.table.value = empty_state(
                f"No model in the registry ({self.registry.root}): `workbench train ...` registers one."
            ).value
            self.chooser.options = []
            self.details.children = []
            self.predict_button.disabled = True
            self.predict_out.children = [empty_state("No model to predict with.")]
        else:
            self.table.value = table_html(
                [
                    "name",
                    "version",
                    "promoted",
                    "arch",
                    "target",
                    "symbol",
                    "tf",
                    "OOS accuracy",
                    "OOS AUC",
                    "created",
                ],
                [
                    [
                        r["name"],
                        r["version"],
                        "yes" if r["promoted"] else "",
                        _cell(r["arch"]),
                        _cell(r["target"]),  # a sentiment model has none (NaN in the listing)
                        _cell(r["symbol"]),
                        _cell(r["timeframe"]),
                        _num("accuracy", r["oos_accuracy"]),
                        _num("auc", r["oos_auc"]),
                        str(r["created"] or "")[:19],
                    ]
                    for _, r in ls.iterrows()
                ],
            )
            opts = [
                (
                    f"{r['name']} {r['version']}" + (" (promoted)" if r["promoted"] else ""),
                    (r["name"], r["version"]),
                )
                for _, r in ls.iterrows()
            ]
            old = self.chooser.value
            self.chooser.options = opts
            values = [v for _, v in opts]
            self.predict_button.disabled = False
            price = [(r["name"], r["version"]) for _, r in ls.iterrows() if r["kind"] == "price"]
            self.chooser.value = old if old in values else (price or values)[-1]
            if self.chooser.value == old and old is not None:
                self.show(old)
        self.sentiment()

    # ---------------------------------------------------------------------------------------- details

    def show(self, choice: tuple[str, str] | None) -> None:
        self.predict_out.children = []
        if choice is None:
            self.details.children = []
            return
        name, version = choice
        try:
            meta = self.registry.meta(name, version)
        except (OSError, ValueError, RuntimeError) as e:
            self.details.children = [error_state(f"{name} {version}: {e}")]
            return
        self.meta = meta
        metrics = meta.get("metrics") or {}
        cols = [k for k, v in metrics.items() if isinstance(v, dict)]
        keys: list[str] = []
        for c in cols:
            keys += [k for k in metrics[c] if k not in keys]
        mt = (
            table_html(
                ["metric (out of sample)", *cols],
                [[k, *(_num(k, metrics[c].get(k)) for c in cols)] for k in keys],
            )
            if cols
            else empty_state("no metrics recorded").value
        )
        d = meta.get("data") or {}
        val = meta.get("validation") or {}
        lineage = [
            ["data", f"{d.get('exchange', '?')} {d.get('symbol', '?')} {d.get('timeframe', '?')}"],
            ["period", f"{d.get('start', '?')} .. {d.get('end', '?')}"],
            ["rows", _num("n_trades", d.get("rows"))],
            ["data sha256", str(d.get("sha256", "?"))],
            ["code version", str(meta.get("code_version", "?"))],
            ["created", str(meta.get("created", "?"))],
            ["arch / target / horizon", f"{meta.get('arch')} / {meta.get('target')} / {meta.get('horizon')}"],
            ["validation", f"{val.get('method', '?')}, {val.get('folds', '?')} folds"],
            ["seed", str(meta.get("seed", ""))],
        ]
        try:
            state = self.registry._state(name)
        except (OSError, ValueError):
            state = {}
        log = [[e.get("at", ""), e.get("action", ""), e.get("version", "")] for e in state.get("log") or []]
        self.details.children = [
            W.HTML(f"<h4>{html.escape(name)} {html.escape(version)}</h4>"),
            W.HTML(mt),
            W.HTML("<h4>Lineage</h4>" + table_html(["", ""], lineage)),
            W.HTML(
                "<h4>Promotions</h4>"
                + (
                    table_html(["at", "action", "version"], log)
                    if log
                    else empty_state("never promoted").value
                )
            ),
        ]

    # ---------------------------------------------------------------------------------------- predictions

    def predict(self) -> None:
        """Score the last ``bars`` stored candles of the chosen model's market, beside what happened."""
        from workbench.data.store import Store, StoreError
        from workbench.ml.predict import PredictionService
        from workbench.viz.tearsheet import prediction_figure

        choice = self.chooser.value
        if choice is None:
            self.predict_out.children = [empty_state("No model to predict with.")]
            return
        name, version = choice
        self.predict_out.children = [W.HTML("<i>predicting…</i>")]
        meta = self.registry.meta(name, version)
        kind = meta.get("kind", "price")
        if kind != "price":
            self.predict_out.children = [
                empty_state(
                    f"{name} {version} is a {kind} model: it predicts no price"
                    + (" (its series is under Sentiment beside price)." if kind == "sentiment" else ".")
                )
            ]
            return
        d = meta.get("data") or {}
        ex, sym, tf = d.get("exchange"), d.get("symbol"), d.get("timeframe")
        try:
            store = Store(self.data, create=False)
            candles = store.candles(str(ex), str(sym), str(tf))
        except (StoreError, OSError, ValueError):
            self.predict_out.children = [
                empty_state(
                    f"No stored {tf} candles of {ex} {sym} (what {name} {version} was trained on) in {self.data}: "
                    f"`workbench collect ohlcv -e {ex} -s {sym} -t {tf}` stores them."
                )
            ]
            return
        try:
            svc = PredictionService.from_registry(self.registry, name, version)
            lookback = svc.lookback + self.bars
            recent = candles.iloc[-lookback:]
            pred = svc.predict_batch(recent).iloc[-self.bars :]
            real = realised_outcome(
                recent["close"], int(meta.get("horizon") or 1), str(meta.get("target"))
            ).iloc[-self.bars :]
        except Exception as e:  # a model the code can no longer load or score: in words
            self.predict_out.children = [
                error_state(f"{name} {version}: cannot predict: {type(e).__name__}: {e}")
            ]
            return
        self.prediction, self.realised = pred, real
        fig = prediction_figure(
            recent["close"].iloc[-self.bars :], pred, real, target=str(meta.get("target"))
        )
        self.figures["predictions"] = fig
        both = pred.notna() & real.notna()
        if str(meta.get("target")) == "direction" and both.any():
            hit = float(((pred[both] > 0.5).astype(float) == real[both]).mean())
            note = (
                f"hit rate over the {int(both.sum())} bars with an outcome: {format_metric('win_rate', hit)}"
            )
        else:
            note = f"{int(pred.notna().sum())} predictions, {int(real.notna().sum())} realised outcomes"
        self.predict_out.children = [figure_widget(fig), W.HTML(html.escape(note))]

    # ---------------------------------------------------------------------------------------- sentiment

    def sentiment_models(self) -> list[tuple[str, tuple[str, str, str]]]:
        """The sentiment models the series can be drawn with: each registry name of kind ``sentiment`` at its
        promoted version (else its latest), then the older ``<data>/sentiment/*.joblib`` files; as dropdown
        options ``(label, ("registry", name, version) | ("file", path, ""))``."""
        rows = self.rows
        opts: list[tuple[str, tuple[str, str, str]]] = []
        if len(rows):
            for name in dict.fromkeys(rows.loc[rows["kind"] == "sentiment", "name"]):
                try:
                    v = self.registry.resolve(str(name), None)
                except (OSError, ValueError):
                    continue
                prom = self.registry.promoted(str(name)) == v
                opts.append(
                    (f"{name} {v}" + (" (promoted)" if prom else " (latest)"), ("registry", str(name), v))
                )
        for path in _legacy_models(self.data):
            opts.append((f"{path.name} (file)", ("file", str(path), "")))
        return opts

    def _load_sentiment(self, choice: tuple[str, str, str]) -> Any:
        if choice not in self._sentiment_cache:
            where, ref, version = choice
            if where == "registry":
                model, _ = self.registry.load_artifact(ref, version, kind="sentiment")
            else:
                from workbench.ml.sentiment import load_model

                model = load_model(ref)
            self._sentiment_cache[choice] = model
        return self._sentiment_cache[choice]

    def sentiment(self) -> None:
        """The sentiment models (registry and old files) and, with news kept and a model, sentiment beside price."""
        from workbench.data.news import NewsError, load_news, news_dir

        rows = self.rows
        sent = rows[rows["kind"] == "sentiment"] if len(rows) else rows
        legacy = _legacy_models(self.data)
        parts: list[W.Widget] = []
        if len(sent):
            parts.append(W.HTML(_sentiment_table(self.registry, sent)))
        if legacy:
            parts.append(
                W.HTML(
                    table_html(["sentiment model (older file)", "file"], [[p.stem, str(p)] for p in legacy])
                )
            )
        self.sentiment_plot = W.VBox()
        self.sentiment_controls = W.HBox()
        options = self.sentiment_models()
        if not options:
            self.sentiment_out.children = [
                *parts,
                empty_state(
                    "No sentiment model: `workbench sentiment train --model tfidf` trains one and registers it "
                    "as sentiment-tfidf in the model registry."
                ),
            ]
            return
        try:
            news = load_news(self.data)
        except (NewsError, OSError) as e:
            self.sentiment_out.children = [*parts, error_state(f"news: {e}")]
            return
        symbols = sorted({str(v) for v in news["symbol"] if v is not None})
        if not len(news):
            msg = (
                f"No news stored ({news_dir(self.data)}): `workbench news import FILE --symbol BTC/USDT` or "
                "`workbench news collect --feed URL --symbol BTC/USDT` keeps some."
            )
            self.sentiment_out.children = [*parts, empty_state(msg)]
            return
        if not symbols:
            self.sentiment_out.children = [
                *parts,
                empty_state(
                    f"None of the {len(news)} stored news items names a symbol: import them with --symbol."
                ),
            ]
            return
        self.news = news
        self.sentiment_model = W.Dropdown(
            description="Sentiment", options=options, value=options[0][1], layout=W.Layout(width="420px")
        )
        self.sentiment_symbol = W.Dropdown(description="Symbol", options=symbols, value=symbols[0])
        self.sentiment_tf = W.Dropdown(description="Bars", options=list(SENTIMENT_TIMEFRAMES), value="1h")
        for w in (self.sentiment_model, self.sentiment_symbol, self.sentiment_tf):
            w.observe(lambda _ch: self.draw_sentiment(), names="value")
        self.sentiment_controls.children = [self.sentiment_model, self.sentiment_symbol, self.sentiment_tf]
        self.sentiment_out.children = [*parts, self.sentiment_controls, self.sentiment_plot]
        self.draw_sentiment()

    def draw_sentiment(self) -> None:
        """The chosen symbol's stored close over its news span beside the per-bar sentiment of those news."""
        from workbench.data.store import Store, StoreError
        from workbench.features.sentiment import sentiment_series
        from workbench.types import Timeframe, ms_to_iso
        from workbench.viz.sentiment import sentiment_price_figure

        choice, symbol = self.sentiment_model.value, self.sentiment_symbol.value
        tf = Timeframe.parse(self.sentiment_tf.value)
        news = self.news[self.news["symbol"] == symbol]
        t = news["time"].to_numpy()
        lo, hi = int(t.min()) // tf.ms * tf.ms, int(t.max()) // tf.ms * tf.ms + tf.ms
        span = f"{ms_to_iso(int(t.min()))} .. {ms_to_iso(int(t.max()))}"
        self.sentiment_frame = None
        try:
            store = Store(self.data, create=False)
            keys = [k for k in store.series("candles") if k.symbol == symbol and k.timeframe == tf.value]
            candles = store.candles(keys[0].exchange, symbol, tf.value, lo, hi) if keys else None
        except (StoreError, OSError, ValueError):
            candles = None
        if candles is None or not len(candles):
            self.sentiment_plot.children = [
                empty_state(
                    f"No stored {tf.value} candles of {symbol} over its news span ({span}, {len(news)} items): "
                    f"`workbench collect ohlcv -s {symbol} -t {tf.value}` stores them."
                )
            ]
            return
        try:
            series = sentiment_series(news, self._load_sentiment(choice), tf, symbol=symbol)
        except Exception as e:  # a model the code can no longer load or score: in words
            self.sentiment_plot.children = [
                error_state(f"{choice[1]}: cannot score the news: {type(e).__name__}: {e}")
            ]
            return
        self.sentiment_frame = series
        label = next(lbl for lbl, v in self.sentiment_model.options if v == choice)
        fig = sentiment_price_figure(
            candles["close"], series, title=f"{symbol} {tf.value}: close beside news sentiment ({label})"
        )
        self.figures["sentiment"] = fig
        mean = float((series["score"] * series["count"]).sum() / series["count"].sum())
        note = (
            f"{int(series['count'].sum())} items of {symbol} in {len(series)} bars ({span}); "
            f"mean score {mean:+.2f} (P(bullish) - P(bearish)); an item counts in the bar that holds its time"
        )
        self.sentiment_plot.children = [figure_widget(fig), W.HTML(html.escape(note))]


SENTIMENT_TIMEFRAMES = ("5m", "15m", "1h", "4h", "1d")


def _legacy_models(data: Path) -> list[Path]:
    folder = data / "sentiment"
    return sorted(folder.glob("*.joblib")) if folder.is_dir() else []


def _sentiment_table(registry: Any, rows: pd.DataFrame) -> str:
    """The registry's sentiment versions with their validation and test accuracy and macro-F1."""
    body = []
    for _, r in rows.iterrows():
        try:
            m = registry.meta(r["name"], r["version"]).get("metrics") or {}
        except (OSError, ValueError):
            m = {}
        va, te = m.get("valid") or {}, m.get("test") or {}
        body.append(
            [
                r["name"],
                r["version"],
                "yes" if r["promoted"] else "",
                _cell(r["arch"]),
                _num("accuracy", va.get("accuracy")),
                _num("macro_f1", va.get("macro_f1")),
                _num("accuracy", te.get("accuracy")),
                _num("macro_f1", te.get("macro_f1")),
                str(r["created"] or "")[:19],
            ]
        )
    return table_html(
        [
            "sentiment model",
            "version",
            "promoted",
            "arch",
            "valid accuracy",
            "valid macro-F1",
            "test accuracy",
            "test macro-F1",
            "created",
        ],
        body,
    )


def page(
    settings: Settings | None = None,
    *,
    data: str | Path | None = None,
    registry: str | Path | None = None,
    bars: int = DEFAULT_BARS,
) -> W.Widget:
    """The Models page; ``data``: the data folder, ``registry``: the registry folder (defaults: the settings')."""
    try:
        s = settings or load_settings()
        d = data_dir(s, data)
        if (
            not registry
        ):  # the configured registry (Settings resolves it), moved along with a data folder given
            registry = s.registry_dir
            if d != s.data_dir and registry.is_relative_to(s.data_dir):
                registry = d / registry.relative_to(s.data_dir)
        return ModelsPanel(d, Path(registry), bars).widget
    except Exception as e:  # the settings or the registry unreadable: say so on the page
        return error_state(f"Models: {type(e).__name__}: {e}")
