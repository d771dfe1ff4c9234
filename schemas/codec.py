"""Records on the wire are JSON via orjson; decoding validates against the record's model."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def dumps(record: BaseModel) -> bytes:
    return orjson.dumps(record.model_dump(mode="python"))


def loads(model: type[M], data: bytes) -> M:
    """Decode and validate; raises ValueError (orjson.JSONDecodeError or ValidationError)."""
    return model.model_validate(orjson.loads(data))
