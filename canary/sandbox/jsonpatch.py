"""RFC 7386 merge patch and RFC 6902 JSON patch, as the Kubernetes API server applies them.

Split out of the emulator (canary/sandbox/kubeapi.py) because it is plain data
manipulation with its own edge cases, tested through the emulator's PATCH.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key; lists are replaced whole). Shares nothing with `doc` or
    `patch`: `doc` is copied once, then patched in place (it was copied again at every level the patch reached)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    _merge_into(out, patch)
    return out


def _merge_into(out: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            if not isinstance(out.get(k), dict):
                out[k] = {}
            _merge_into(out[k], v)
        else:
            out[k] = copy.deepcopy(v)


def json_patch(doc: Any, ops: list[Any]) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test. Raises ValueError."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op["op"], _pointer(op["path"])
        if kind == "test":
            if _get(doc, path) != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif kind == "remove":
            _remove(doc, path)
        elif kind in ("add", "replace"):
            if kind == "replace":
                _get(doc, path)  # must exist
            value = copy.deepcopy(op["value"])
            doc = value if not path else _add(doc, path, value, replace=kind == "replace")
        elif kind in ("move", "copy"):
            src = _pointer(op["from"])
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                _remove(doc, src)
            doc = value if not path else _add(doc, path, value, replace=False)
        else:
            raise ValueError(f"unknown op {kind!r}")
    return doc


def _pointer(text: str) -> list[str]:
    if text and not text.startswith("/"):
        raise ValueError(f"bad JSON pointer {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text.split("/")[1:]]


def _get(doc: Any, path: list[str]) -> Any:
    for part in path:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _add(doc: Any, path: list[str], value: Any, *, replace: bool) -> Any:
    parent, last = _get(doc, path[:-1]), path[-1]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if replace:
            parent[idx] = value
        elif 0 <= idx <= len(parent):
            parent.insert(idx, value)
        else:
            raise IndexError(f"index {idx} out of range")
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise TypeError(f"cannot add into a {type(parent).__name__}")
    return doc


def _remove(doc: Any, path: list[str]) -> None:
    parent, last = _get(doc, path[:-1]), path[-1]
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
