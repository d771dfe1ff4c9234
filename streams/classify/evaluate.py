"""Evaluate the classifier on the held-out corpus, and show how the threshold was chosen.

    python -m streams.classify.evaluate [--pack packs/wenzhou] [--out bench/results/...json]

The threshold is chosen on a validation split of ``train/`` (every fifth report); ``heldout/`` is
only ever used here, for the numbers reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.classify import CONFIDENCE_THRESHOLD, Classifier, read_corpus
from streams.classify.model import NaiveBayes


def score(classifier: Classifier, examples: list[tuple[str, str]]) -> dict[str, Any]:
    started = time.perf_counter()
    results = [(label, classifier.classify(text)) for text, label in examples]
    elapsed = time.perf_counter() - started
    covered = [(label, c) for label, c in results if c.category is not None]
    recall: dict[str, float] = {}
    precision: dict[str, float] = {}
    for category in sorted({label for _, label in examples}):
        truth = [c for label, c in results if label == category]
        predicted = [label for label, c in covered if c.category == category]
        recall[category] = round(sum(c.category == category for c in truth) / len(truth), 3)
        if predicted:
            precision[category] = round(sum(p == category for p in predicted) / len(predicted), 3)
    confusions = Counter(
        (label, c.category) for label, c in covered if c.category != label
    ).most_common(10)
    return {
        "examples": len(examples),
        "accuracy_all": round(sum(c.category == label for label, c in results) / len(results), 4),
        "coverage": round(len(covered) / len(results), 4),
        "accuracy_covered": round(
            sum(c.category == label for label, c in covered) / max(len(covered), 1), 4
        ),
        "recall": recall,
        "precision": precision,
        "top_confusions": [f"{a} → {b}: {n}" for (a, b), n in confusions],
        "mean_us_per_text": round(elapsed / len(examples) * 1e6, 1),
    }


def threshold_sweep(pack: Path) -> list[dict[str, Any]]:
    """Accuracy of what is not sent to triage, and the share sent, per threshold, on a
    validation split of train/ (model trained on the other four fifths)."""
    examples = read_corpus(pack / "corpus" / "train")
    validation = examples[::5]
    training = [e for i, e in enumerate(examples) if i % 5]
    base = Classifier.from_pack(pack)
    model = Classifier(NaiveBayes.train(training), base.default_priority)
    sweep = []
    for threshold in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6):
        result = score(Classifier(model.model, model.default_priority, threshold), validation)
        sweep.append({"threshold": threshold, **{k: result[k] for k in ("coverage",
                      "accuracy_covered", "accuracy_all")}})  # fmt: skip
    return sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack", type=Path, default=Path("packs/wenzhou"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    classifier = Classifier.from_pack(args.pack)
    train_seconds = time.perf_counter() - started
    heldout = score(classifier, read_corpus(args.pack / "corpus" / "heldout"))
    report = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "threshold": CONFIDENCE_THRESHOLD,
        "train_examples": len(read_corpus(args.pack / "corpus" / "train")),
        "train_seconds": round(train_seconds, 3),
        "validation_sweep": threshold_sweep(args.pack),
        "heldout": heldout,
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
