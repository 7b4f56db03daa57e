"""A tiny multinomial naive Bayes text classifier, trained in milliseconds on the CPU."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).with_name("reviews.tsv")
_WORD = re.compile(r"[a-z']+")


def tokens(text: str) -> list[str]:
    """Lower-case words."""
    return _WORD.findall(text.lower())


@dataclass
class NaiveBayes:
    """Word counts per label, with add-one smoothing."""

    words: dict[str, Counter[str]] = field(default_factory=dict)
    docs: Counter[str] = field(default_factory=Counter)
    vocabulary: set[str] = field(default_factory=set)

    def fit(self, examples: list[tuple[str, str]]) -> NaiveBayes:
        for label, text in examples:
            self.docs[label] += 1
            counts = self.words.setdefault(label, Counter())
            for word in tokens(text):
                counts[word] += 1
                self.vocabulary.add(word)
        return self

    def predict(self, text: str) -> tuple[str, float]:
        """The most likely label and its probability."""
        total_docs = sum(self.docs.values())
        scores = {}
        for label, counts in self.words.items():
            denominator = sum(counts.values()) + len(self.vocabulary)
            score = math.log(self.docs[label] / total_docs)
            for word in tokens(text):
                score += math.log((counts[word] + 1) / denominator)
            scores[label] = score
        best = max(scores, key=scores.__getitem__)
        norm = sum(math.exp(s - scores[best]) for s in scores.values())
        return best, 1.0 / norm


def load_model() -> NaiveBayes:
    """Train on the bundled reviews."""
    examples = []
    for line in DATA.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            examples.append((label, text))
    return NaiveBayes().fit(examples)
