"""How the API and the CLI turn domain values into JSON."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for datetimes, enums and dataclasses."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
