"""Mask personal data before anything is stored or streamed.

Mainland mobile numbers keep their first 3 and last 4 digits (138****1234), the way hotline
staff read them back; resident ID numbers keep the 6-digit region code and the last 4.
"""

from __future__ import annotations

import re
from typing import Any

_ID_NUMBER = re.compile(r"(?<![0-9])([1-9][0-9]{5})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])(0[0-9]{2,3})[- ]?[0-9]{3,4}([0-9]{4})(?![0-9])")


# Every pattern above needs 7 digits in a row somewhere: most strings are skipped by this test.
_SEVEN_DIGITS = re.compile(r"[0-9]{7}")


def mask_text(text: str) -> str:
    """Mask ID numbers, mobile and landline numbers inside free text."""
    if not _SEVEN_DIGITS.search(text):
        return text
    text = _ID_NUMBER.sub(r"\1********\2", text)
    text = _MOBILE.sub(r"\1****\2", text)
    return _LANDLINE.sub(r"\1-****\2", text)


def mask_contact(value: str) -> str:
    """A caller's contact field: only the last 4 characters survive."""
    digits = value.strip()
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def mask_payload(
    payload: dict[str, Any], *, text_fields: frozenset[str], contact_fields: frozenset[str]
) -> dict[str, Any]:
    """A copy with contact fields masked whole and free-text fields masked inside; ids, codes
    and URLs stay as they are."""
    masked = dict(payload)
    for field, value in payload.items():
        if not isinstance(value, str):
            continue
        if field in contact_fields:
            masked[field] = mask_contact(value)
        elif field in text_fields:
            masked[field] = mask_text(value)
    return masked
