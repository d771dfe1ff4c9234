"""Category and priority for an event, in order of trust:

1. the source chose it (an Open311 service code),
2. the pack maps the source's own code to it (an inspector's national code, a 120 record, an
   IoT alarm type, a grid event type): used as given, never re-guessed,
3. the text classifier (rules, then the trained model); below its confidence threshold the event
   goes to manual triage instead of a guess.

Priority is the highest of: what the source said, the category's default (except for sources
that grade every report themselves), the urgent signals found in the text.
"""

from __future__ import annotations

from typing import Protocol

from hub.pack import Pack
from schemas.event import EventV1, Priority, Source

_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}
# Sources whose own grading is the priority: 120 dispatchers grade every call (分级调度), so a
# level-4 call stays normal although its category's default is urgent.
GRADED_SOURCES = frozenset({Source.EMERGENCY_120})


class TextClassification(Protocol):
    @property
    def category(self) -> str | None: ...
    @property
    def confidence(self) -> float: ...
    @property
    def priority(self) -> str: ...
    @property
    def signals(self) -> tuple[str, ...]: ...
    @property
    def signal_priority(self) -> str | None: ...
    @property
    def method(self) -> str: ...


class TextClassifier(Protocol):
    def classify(self, text: str) -> TextClassification: ...


def highest(*priorities: Priority | str) -> Priority:
    return max((Priority(p) for p in priorities), key=_RANK.__getitem__)


def categorize(event: EventV1, *, pack: Pack, classifier: TextClassifier) -> dict[str, object]:
    """The category fields for ``event`` (to ``model_copy(update=…)`` it with)."""
    text = classifier.classify(event.text)  # also for coded events: urgent signals still count
    category: str | None
    if event.category is not None:
        category, confidence, method = event.category, event.category_confidence or 1.0, "source"
    elif (coded := pack.category_of_source(event.source.value, event.source_category)) is not None:
        category, confidence, method = coded, 1.0, "code"
    else:
        category, confidence, method = text.category, text.confidence, text.method
    known = pack.category(category) if category is not None else None
    default = Priority(known.priority) if known else Priority.NORMAL
    if event.source in GRADED_SOURCES:
        default = event.priority
    return {
        "category": known.code if known else None,
        "category_confidence": round(confidence, 4) if known else None,
        "category_method": method if known else None,
        "needs_triage": known is None,
        "signals": text.signals,
        "priority": highest(event.priority, default, text.signal_priority or Priority.LOW),
    }
