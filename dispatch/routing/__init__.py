"""Routing: which department a ticket goes to (``rules``), and rules learned from history
(``bootstrap``)."""

from dispatch.routing.rules import (
    Decision,
    RoutingContext,
    Rule,
    parse_rules,
    route,
    rules_to_rows,
    validate_rules,
)

__all__ = [
    "Decision",
    "RoutingContext",
    "Rule",
    "parse_rules",
    "route",
    "rules_to_rows",
    "validate_rules",
]
