"""Open311 GeoReport v2 documents as JSON or XML, and its error list.

The XML follows the spec's element names: a list document is a root element holding one child
element per item (``<services><service>…``), nested lists likewise, and null is an empty element.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

# Only writing XML here, never parsing it: nothing for an XML attack to reach.
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi.responses import JSONResponse, Response

from schemas.intake import CHINA_TZ

FORMATS = ("json", "xml")
# The child element name of each list, by the list's element name.
_ITEM_NAMES = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "keywords": "keyword",
}


class Open311Error(Exception):
    """Answered as the spec's error list: ``[{"code": status, "description": …}]``."""

    def __init__(self, status: int, description: str, fmt: str = "json") -> None:
        super().__init__(description)
        self.status, self.description, self.fmt = status, description, fmt


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def iso(moment: datetime) -> str:
    """ISO 8601 with the offset, in China time (what local clients display)."""
    return moment.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def _fill(element: Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(SubElement(element, key), child)
    elif isinstance(value, list):
        item_name = _ITEM_NAMES.get(element.tag, "item")
        for child in value:
            _fill(SubElement(element, item_name), child)
    else:
        element.text = _text(value)


def to_xml(root: str, document: Any) -> bytes:
    element = Element(root)
    _fill(element, document)
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n' + tostring(element, encoding="unicode").encode()
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def render(fmt: str, root: str, document: Any, status_code: int = 200) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, document), status_code, media_type="text/xml; charset=utf-8")
    return JSONResponse(_jsonable(document), status_code)


def render_error(error: Open311Error) -> Response:
    errors = [{"code": error.status, "description": error.description}]
    fmt = error.fmt if error.fmt in FORMATS else "json"
    return render(fmt, "errors", errors, status_code=error.status)
