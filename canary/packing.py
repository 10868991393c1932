"""Compact in-memory copies of what a long-running controller holds per rollout.

A controller keeps thousands of rollouts' states, step-start snapshots, pending history looks and
cached objects between the moments it reads them. Held as Python objects they take 5-15x their
JSON size; as JSON compressed with zlib at level 1 about a third of the JSON (their keys repeat),
for ~10 us to pack and tens of microseconds to unpack a few kB (docs/decisions.md 44a). One level
and one encoding for all of them, here.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

LEVEL = 1  # zlib: level 1 packs within a few percent of level 6, several times faster


def pack_text(text: str) -> bytes:
    """`text` (UTF-8) compressed."""
    return zlib.compress(text.encode(), LEVEL)


def unpack_text(data: bytes) -> str:
    """What `pack_text` packed. Raises zlib.error or UnicodeDecodeError on damaged bytes."""
    return zlib.decompress(data).decode()


def pack_json(value: Any) -> bytes:
    """`value` as compact JSON (NaN allowed, non-ASCII kept), compressed."""
    return pack_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def unpack_json(data: bytes) -> Any:
    """What `pack_json` packed."""
    return json.loads(zlib.decompress(data))
