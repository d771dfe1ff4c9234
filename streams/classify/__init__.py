"""Classification of Chinese free text into the pack's categories, with priority and confidence.

Rules first for what is unambiguous, then the trained model; below the confidence threshold the
report goes to manual triage rather than to a guessed department. Urgent signals (fire, gas,
people trapped, collapse, flooding) raise priority whatever the category.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from streams.classify.model import NaiveBayes
from streams.classify.rules import category_by_words, urgent_signals

# Chosen on a validation split of train/ (streams/classify/evaluate.py), never on heldout/.
CONFIDENCE_THRESHOLD = 0.3
_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


@dataclass(frozen=True)
class Classification:
    category: str | None
    confidence: float
    priority: str  # the category's default, raised by the signals
    signals: tuple[str, ...]
    signal_priority: str | None  # what the signals alone call for
    method: str  # "rule" or "model"
    needs_triage: bool


def read_corpus(folder: Path) -> list[tuple[str, str]]:
    """(text, category) pairs from ``<folder>/<category>.txt``, one report per line."""
    examples = []
    for path in sorted(folder.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        examples += [(line.strip(), path.stem) for line in lines if line.strip()]
    return examples


@dataclass(frozen=True)
class Classifier:
    model: NaiveBayes
    default_priority: dict[str, str]
    threshold: float = CONFIDENCE_THRESHOLD

    @classmethod
    def from_pack(cls, pack_dir: Path) -> Classifier:
        return _load(pack_dir.resolve())

    def classify(self, text: str) -> Classification:
        signals = urgent_signals(text)
        ruled = category_by_words(text)
        category: str | None
        if ruled is not None:
            category, confidence, method = ruled, 1.0, "rule"
        else:
            probabilities = self.model.probabilities(text)
            best = max(probabilities, key=probabilities.__getitem__)
            category, confidence, method = best, probabilities[best], "model"
        if confidence < self.threshold or not text.strip():
            category = None
        priority = self.default_priority.get(category or "", "normal")
        if signals.priority and _RANK[signals.priority] > _RANK[priority]:
            priority = signals.priority
        return Classification(
            category=category,
            confidence=round(confidence, 4),
            priority=priority,
            signals=signals.names,
            signal_priority=signals.priority,
            method=method,
            needs_triage=category is None,
        )


@lru_cache
def _load(pack_dir: Path) -> Classifier:
    with open(pack_dir / "taxonomy.csv", newline="", encoding="utf-8") as handle:
        defaults = {row["code"]: row["priority"] for row in csv.DictReader(handle)}
    examples = read_corpus(pack_dir / "corpus" / "train")
    return Classifier(NaiveBayes.train(examples), defaults)
