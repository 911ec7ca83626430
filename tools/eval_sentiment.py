"""Reproduce the sentiment table of docs/models.md and check the floors (``make eval``; not part of make test).

Every model is fitted on the ``train`` split (80% of sent_train), the best offered model is **chosen on
``valid``** (macro-F1) and **reported on ``test``** (the stratified 20% carve of sent_train, seed 0), beside its
accuracy on the frozen crypto headlines (``tests/data/crypto_headlines.csv``, never trained on).

    python tools/eval_sentiment.py                 # all models, MiniLM fine-tuning included (~30 min on 2 cores)
    python tools/eval_sentiment.py --fast          # without the MiniLM models
    python tools/eval_sentiment.py --out benchmarks/results/sentiment_eval.md

Exit status 1 when the chosen model misses the floors on the test split (accuracy >= 0.87, macro-F1 >= 0.82;
``--floor-accuracy`` / ``--floor-macro-f1``) or the default misses 90% of the headlines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from workbench.ml.sentiment import MiniLMEnsemble, evaluate, load_dataset, make_model

ROOT = Path(__file__).resolve().parents[1]
HEADLINES = ROOT / "tests" / "data" / "crypto_headlines.csv"
FAST = ("majority", "vader", "tfidf", "tfidf_char", "default")
SLOW = ("minilm_tfidf", "minilm_finetuned", "minilm_ensemble")


def markdown(table: pd.DataFrame) -> str:
    """A markdown table (floats to 3 decimals, seconds to whole numbers)."""
    cols = [table.index.name or "", *table.columns]

    def cell(col: str, v: object) -> str:
        if isinstance(v, float):
            return f"{v:.0f}" if col.endswith(" s") else f"{v:.3f}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for name, row in table.iterrows():
        out.append("| " + " | ".join([str(name), *(cell(c, row[c]) for c in table.columns)]) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="leave out the MiniLM models")
    ap.add_argument("--models", nargs="*", help="model names (default: all)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of MiniLM fine-tuning")
    ap.add_argument("--floor-accuracy", type=float, default=0.87)
    ap.add_argument("--floor-macro-f1", type=float, default=0.82)
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    a = ap.parse_args(argv)
    names = a.models or (FAST if a.fast else FAST + SLOW)
    train, valid, test = load_dataset("train"), load_dataset("valid"), load_dataset("test")
    heads = pd.read_csv(HEADLINES)
    rows = []
    fitted: dict[
        str, tuple[object, float]
    ] = {}  # name -> (model, fit seconds): the ensemble reuses its parts
    for name in names:
        ft = {"epochs": a.epochs, "progress": True}
        if name == "minilm_ensemble" and {"minilm_finetuned", "tfidf_char"} <= fitted.keys():
            (minilm, s1), (tfidf, s2) = fitted["minilm_finetuned"], fitted["tfidf_char"]
            model, fit_s = MiniLMEnsemble.from_fitted(minilm, tfidf), s1 + s2  # type: ignore[arg-type]
        else:
            params = (
                ft
                if name == "minilm_finetuned"
                else {"epochs": a.epochs}
                if name == "minilm_ensemble"
                else {}
            )
            model = make_model(name, **params)
            t0 = time.perf_counter()
            model.fit(train["text"], train["label"])
            fit_s = time.perf_counter() - t0
        fitted[name] = (model, fit_s)
        v, t, h = (evaluate(model, d["text"], d["label"]) for d in (valid, test, heads))
        rows.append(
            {
                "model": name,
                "valid acc": v["accuracy"],
                "valid macro-F1": v["macro_f1"],
                "test acc": t["accuracy"],
                "test macro-F1": t["macro_f1"],
                "test F1 bear / neutral / bull": " / ".join(
                    f"{t['f1'][k]:.3f}" for k in ("bearish", "neutral", "bullish")
                ),
                "crypto headlines acc": h["accuracy"],
                "fit s": fit_s,
            }
        )
        print(
            f"{name}: valid {v['accuracy']:.3f} / {v['macro_f1']:.3f}, test {t['accuracy']:.3f} / "
            f"{t['macro_f1']:.3f}, headlines {h['accuracy']:.3f}, fit {fit_s:.0f} s",
            flush=True,
        )
    table = pd.DataFrame(rows).set_index("model")
    best = str(table["valid macro-F1"].idxmax())
    md = markdown(table)
    chosen = table.loc[best]
    lines = [
        md,
        "",
        f"chosen on valid (macro-F1): {best}; on test: accuracy {chosen['test acc']:.3f}, "
        f"macro-F1 {chosen['test macro-F1']:.3f} (floors {a.floor_accuracy} / {a.floor_macro_f1})",
        f"train {len(train)}, valid {len(valid)}, test {len(test)}, crypto headlines {len(heads)}",
    ]
    print("\n".join(lines))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(lines) + "\n")
    ok = chosen["test acc"] >= a.floor_accuracy and chosen["test macro-F1"] >= a.floor_macro_f1
    if "default" in table.index and table.loc["default", "crypto headlines acc"] < 0.90:
        print("FAIL: the default reads fewer than 90% of the crypto headlines", file=sys.stderr)
        ok = False
    if not ok:
        print(f"FAIL: {best} misses the floors on the test split", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
