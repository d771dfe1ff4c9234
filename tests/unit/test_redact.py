"""Secrets out of the logs (hub/redact.py): the access log's records, formatted by uvicorn's own
formatter, show device tokens and credential parameters masked and nothing else changed."""

import logging

import pytest
from uvicorn.logging import AccessFormatter

from hub.redact import RedactSecrets, fixed_segments, redact_request_logs

ROUTES = ["/api/v1/tickets/{ticket_id}", "/api/v1/vendor/telemetry", "/api/v1/whoami",
          "/api/v1/{token}/telemetry", "/open311/v2/x"]  # fmt: skip
KNOWN = fixed_segments(ROUTES)


def test_fixed_segments_are_the_words_after_the_prefix():
    assert KNOWN == {"tickets", "vendor", "whoami"}


@pytest.mark.parametrize(
    ("path", "logged"),
    [("/api/v1/tok-SECRET/telemetry", "/api/v1/***/telemetry"),
     ("/api/v1/tok-SECRET/attributes", "/api/v1/***/attributes"),
     ("/api/v1/tok-SECRET/rpc/1", "/api/v1/***/rpc/1"),  # ThingsBoard paths the hub lacks
     ("/api/v1/vendor/telemetry", "/api/v1/vendor/telemetry"),
     ("/api/v1/tickets/123/accept", "/api/v1/tickets/123/accept"),
     ("/api/v1/whoami", "/api/v1/whoami"),
     ("/open311/v2/requests.json?api_key=SECRET&x=1", "/open311/v2/requests.json?api_key=***&x=1"),
     ("/open311/v2/requests.json?x=1&API_KEY=SECRET", "/open311/v2/requests.json?x=1&API_KEY=***"),
     ("/x?api%5Fkey=SECRET", "/x?api%5Fkey=***"),
     ("/x?key=SECRET;token=SECRET&access_token=SECRET", "/x?key=***;token=***&access_token=***"),
     ("/x?monkey=1&keys=2", "/x?monkey=1&keys=2")],
)  # fmt: skip
def test_tokens_in_paths_and_credentials_in_queries_are_masked(path, logged):
    assert RedactSecrets(KNOWN).redact(path) == logged


def test_an_access_record_is_masked_as_uvicorn_formats_it():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/api/v1/tok-SECRET/telemetry?token=SECRET", "1.1", 401),
        None,
    )  # fmt: skip
    assert RedactSecrets(KNOWN).filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s",
                           use_colors=False).format(record)  # fmt: skip
    assert line == "127.0.0.1:5000 POST /api/v1/***/telemetry?token=*** HTTP/1.1 401 Unauthorized"


def test_attaching_twice_leaves_one_filter_per_logger():
    redact_request_logs(["/api/v1/tickets"], ["test.redact.a", "test.redact.b"])
    redact_request_logs(["/api/v1/tickets"], ["test.redact.a", "test.redact.b"])
    for name in ("test.redact.a", "test.redact.b"):
        filters = logging.getLogger(name).filters
        assert len([f for f in filters if isinstance(f, RedactSecrets)]) == 1
