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

import numpy as np

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
    # Row per known n-gram, column per class: log P(gram | class). Scoring a text sums the rows
    # of its n-grams in one numpy call instead of a Python loop per class.
    vocabulary: dict[str, int]
    log_likelihood: np.ndarray
    log_unseen: np.ndarray
    log_prior: np.ndarray

    @classmethod
    def train(cls, examples: Iterable[tuple[str, str]], alpha: float = 0.5) -> NaiveBayes:
        counts: dict[str, Counter[str]] = {}
        docs: Counter[str] = Counter()
        for text, label in examples:
            counts.setdefault(label, Counter()).update(ngrams(text))
            docs[label] += 1
        classes = tuple(sorted(counts))
        vocabulary = {g: i for i, g in enumerate(sorted(set().union(*counts.values())))}
        matrix = np.zeros((len(vocabulary), len(classes)))
        unseen = np.zeros(len(classes))
        for column, label in enumerate(classes):
            grams = counts[label]
            denominator = sum(grams.values()) + alpha * (len(vocabulary) + 1)
            matrix[:, column] = np.log(alpha / denominator)
            for gram, n in grams.items():
                matrix[vocabulary[gram], column] = math.log((n + alpha) / denominator)
            unseen[column] = math.log(alpha / denominator)
        total = sum(docs.values())
        prior = np.array([math.log(docs[label] / total) for label in classes])
        return cls(classes, vocabulary, matrix, unseen, prior)

    def probabilities(self, text: str) -> dict[str, float]:
        """Posterior-like scores: log-probabilities divided by √(n-grams), then softmax.

        Plain naive Bayes posteriors are near 0 or 1 for any long text; the scaling keeps them
        comparable across lengths so one threshold can decide what goes to triage."""
        grams = ngrams(text)
        if not grams:
            return {label: 1 / len(self.classes) for label in self.classes}
        rows = [self.vocabulary[g] for g in grams if g in self.vocabulary]
        unseen = len(grams) - len(rows)
        scores = self.log_prior + self.log_likelihood[rows].sum(axis=0) + unseen * self.log_unseen
        scores = scores / math.sqrt(len(grams))
        exps = np.exp(scores - scores.max())
        shares = exps / exps.sum()
        return dict(zip(self.classes, shares.tolist(), strict=True))
