"""Rules for what is unambiguous: urgent danger signals, and a few words that name a category.

Kept deliberately small: everything else is the trained model's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# signal → (pattern, the priority it raises a report to)
URGENT_SIGNALS: dict[str, tuple[re.Pattern[str], str]] = {
    "fire": (re.compile(r"着火|起火|失火|火灾|明火|冒烟|浓烟|烧起来"), "urgent"),
    "explosion": (re.compile(r"爆炸|炸了|爆燃"), "urgent"),
    "gas": (re.compile(r"燃气泄漏|煤气泄漏|漏气|燃气味|煤气味|液化气.{0,4}(漏|味)"), "urgent"),
    "trapped": (re.compile(r"被困|困在|出不来"), "urgent"),
    "collapse": (re.compile(r"倒塌|坍塌|塌了|塌方"), "urgent"),
    "flooding": (re.compile(r"淹没|被淹|淹了|齐腰|没过膝|水漫进"), "high"),
}
# A negation right before a signal word cancels it: 没有着火, 未见明火, 无人被困.
_NEGATION = re.compile(r"(没有|没|未见|未|无人|无|不是|并非)\S{0,2}$")

# A few words that decide the category by themselves.
CATEGORY_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"井盖|窨井"), "manhole-cover"),
    (re.compile(r"燃气泄漏|煤气泄漏|燃气味|煤气味"), "gas-leak"),
    (re.compile(r"路灯"), "streetlight"),
)


@dataclass(frozen=True)
class Signals:
    names: tuple[str, ...]
    priority: str | None  # the highest priority the signals call for, or None


def urgent_signals(text: str) -> Signals:
    found: list[str] = []
    priority: str | None = None
    for name, (pattern, raises_to) in URGENT_SIGNALS.items():
        for match in pattern.finditer(text):
            if _NEGATION.search(text[max(0, match.start() - 4) : match.start()]):
                continue
            found.append(name)
            if priority != "urgent":
                priority = raises_to
            break
    return Signals(tuple(found), priority)


def category_by_words(text: str) -> str | None:
    for pattern, category in CATEGORY_WORDS:
        if pattern.search(text):
            return category
    return None
