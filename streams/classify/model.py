"""A multinomial naive Bayes model over character unigrams and bigrams.

Chinese needs no word segmentation for this: character n-grams carry the words. Naive Bayes
trains in milliseconds from the corpus at load time (so the corpus in the pack is the only
artefact), classifies in tens of microseconds, and its log-probabilities, scaled by text length,
give a usable confidence for sending doubtful reports to triage.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_NOISE = re.compile(r"[\s\d\W_]+")  # digits, spaces, punctuation carry no category


def ngrams(text: str, sizes: tuple[int, ...] = (1, 2)) -> list[str]:
    text = _NOISE.sub(" ", text.lower())
    grams: list[str] = []
    for chunk in text.split():
        for size in sizes:
            grams.extend(chunk[i : i + size] for i in range(len(chunk) - size + 1))
    return grams


@dataclass(frozen=True)
class NaiveBayes:
    classes: tuple[str, ...]
    log_prior: dict[str, float]
    log_likelihood: dict[str, dict[str, float]]
    log_unseen: dict[str, float]

    @classmethod
    def train(cls, examples: Iterable[tuple[str, str]], alpha: float = 0.5) -> NaiveBayes:
        counts: dict[str, Counter[str]] = {}
        docs: Counter[str] = Counter()
        for text, label in examples:
            counts.setdefault(label, Counter()).update(ngrams(text))
            docs[label] += 1
        vocabulary = set().union(*counts.values())
        total_docs = sum(docs.values())
        log_likelihood: dict[str, dict[str, float]] = {}
        log_unseen: dict[str, float] = {}
        for label, grams in counts.items():
            denominator = sum(grams.values()) + alpha * (len(vocabulary) + 1)
            log_likelihood[label] = {
                g: math.log((n + alpha) / denominator) for g, n in grams.items()
            }
            log_unseen[label] = math.log(alpha / denominator)
        return cls(
            classes=tuple(sorted(counts)),
            log_prior={label: math.log(n / total_docs) for label, n in docs.items()},
            log_likelihood=log_likelihood,
            log_unseen=log_unseen,
        )

    def probabilities(self, text: str) -> dict[str, float]:
        """Posterior-like scores: log-probabilities divided by √(n-grams), then softmax.

        Plain naive Bayes posteriors are near 0 or 1 for any long text; the scaling keeps them
        comparable across lengths so one threshold can decide what goes to triage."""
        grams = ngrams(text)
        if not grams:
            return {label: 1 / len(self.classes) for label in self.classes}
        scale = 1 / math.sqrt(len(grams))
        scores = {}
        for label in self.classes:
            table, unseen = self.log_likelihood[label], self.log_unseen[label]
            score = self.log_prior[label] + sum(table.get(g, unseen) for g in grams)
            scores[label] = score * scale
        top = max(scores.values())
        exps = {label: math.exp(s - top) for label, s in scores.items()}
        total = sum(exps.values())
        return {label: e / total for label, e in exps.items()}
