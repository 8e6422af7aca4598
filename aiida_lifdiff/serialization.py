"""Make analysis results storable: AiiDA's database refuses NaN and infinities in attributes."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively through dicts, lists, tuples).

    None, not a number, is what the stored result then says: "not defined" (e.g. no power law can be
    fitted to an MSD that never rises above its plateau), which no reader can mistake for a value.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
