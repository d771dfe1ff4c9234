"""What several unit test modules read from the Wenzhou pack."""

from __future__ import annotations

from hub.pack import load_pack
from hub.settings import get_settings
from streams.iot.rules import AlarmRule, parse_rule_set


def pack_rule_sets() -> dict[str, list[AlarmRule]]:
    """Each device profile's alarm rules as the pack seeds them (device-rules.json): what the
    worker runs until an admin edits them."""
    pack = load_pack(get_settings().pack_dir)
    return {code: parse_rule_set(rules) for code, rules in pack.device_rules.items()}
