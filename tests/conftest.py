"""Every test run gets its own topic prefix and database, so runs never see each other's data.

The variables are set before any hub module reads its settings.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

from hub.settings import LOCAL_DATABASE_URL

RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
# The environment as the developer gave it, for tests that run `hub infra …` themselves.
ORIGINAL_ENV = dict(os.environ)
BASE_DSN = os.environ.get("HUB_DATABASE_URL") or LOCAL_DATABASE_URL
TEST_DATABASE = f"hub_test_{RUN_ID}"
TEST_DSN = urlunsplit(urlsplit(BASE_DSN)._replace(path=f"/{TEST_DATABASE}"))

os.environ["HUB_ENV"] = "test"
os.environ["HUB_TOPIC_PREFIX"] = f"test-{RUN_ID}."
os.environ["HUB_DATABASE_URL"] = TEST_DSN
os.environ.setdefault("HUB_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
# The worker rereads alarm rules every second, so a test sees an admin's edit applied quickly.
os.environ["HUB_IOT_RULES_REFRESH_S"] = "1"
# Tests present unknown keys and tokens on purpose, all from 127.0.0.1, to every API and gateway
# they start: the guessing limit (hub/guessing.py) is tested with its own, low, limits.
os.environ["HUB_AUTH_MAX_FAILURES"] = "1000000"
