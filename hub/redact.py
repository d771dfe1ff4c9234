"""Secrets out of the logs: uvicorn's access log prints each request's path and query, and the
ThingsBoard device API carries the device's access token in its path
(``/api/v1/{token}/telemetry``), an Open311 client may put its ``api_key`` in the query.

`RedactSecrets` masks both in every record of the logger it is attached to; API keys in headers
are never logged at all. Attached by ``create_app()`` to ``uvicorn.access`` and to
``uvicorn.error``, where uvicorn logs each websocket's path and query (``/ws/ops?key=…``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
API_PREFIX = "/api/v1/"
# Query parameters that carry a credential, by name (also percent-encoded: api%5Fkey).
_SECRET_PARAMETER = re.compile(
    r"(?i)((?:^|[?&;])(?:api(?:_|%5f)?key|key|(?:access(?:_|%5f))?token)=)[^&;#\s\"]*"
)


def fixed_segments(paths: Iterable[str]) -> frozenset[str]:
    """The hub's own words right after ``/api/v1/`` (``tickets``, ``vendor``, …): any other
    segment there is a device's access token.

    >>> sorted(fixed_segments(["/api/v1/tickets/{id}", "/api/v1/{token}/telemetry", "/healthz"]))
    ['tickets']
    """
    words = set()
    for path in paths:
        if path.startswith(API_PREFIX):
            word = path[len(API_PREFIX) :].split("/", 1)[0]
            if not word.startswith("{"):
                words.add(word)
    return frozenset(words)


class RedactSecrets(logging.Filter):
    """Masks device tokens in paths and credentials in queries, in a record's string args."""

    def __init__(self, known_segments: frozenset[str]) -> None:
        super().__init__()
        self.known_segments = known_segments
        self._token = re.compile(re.escape(API_PREFIX) + r"([^/?#\s\"]+)(?=/)")

    def redact(self, text: str) -> str:
        """
        >>> RedactSecrets(frozenset({"tickets"})).redact("/api/v1/tok-1/telemetry?api_key=k")
        '/api/v1/***/telemetry?api_key=***'
        """
        if API_PREFIX in text:
            text = self._token.sub(self._mask_token, text)
        if "=" in text:
            text = _SECRET_PARAMETER.sub(r"\1" + MASK, text)
        return text

    def _mask_token(self, match: re.Match[str]) -> str:
        if match.group(1) in self.known_segments:
            return match.group(0)
        return API_PREFIX + MASK

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.redact(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        return True


REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_request_logs(paths: Iterable[str], logger_names: Iterable[str] = REQUEST_LOGGERS
                        ) -> None:  # fmt: skip
    """Attach (or refresh) the filter on the loggers that print request paths; the app's route
    paths say which segments after ``/api/v1/`` are its own words rather than tokens."""
    redact = RedactSecrets(fixed_segments(paths))
    for name in logger_names:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, RedactSecrets)]:
            logger.removeFilter(existing)
        logger.addFilter(redact)
