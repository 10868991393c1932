"""The API server's validation of an object's labels and annotations, for the emulator (`kubeapi`).

Why a module of its own: the emulator stood in for an API server that refuses what a cluster refuses, but it
stored any label or annotation key (a space, a second '/', a 300-character name) and any label value (a '/', 64
characters), so a product path writing one passed every test here and failed on the first cluster. These are the
rules of apimachinery's `ValidateObjectMetaAccessor` (pkg/api/validation/objectmeta.go: `ValidateLabels`, then
`ValidateAnnotations`; the key and value rules in pkg/api/validate/content/kube.go and dns.go), with its words, so a
test matching the API server's message matches ours:

* a key (label or annotation; an annotation's is checked lowercased) is an optional prefix, a lowercase RFC 1123
  subdomain of at most 253 bytes, and '/', then a name of 1 to 63 bytes of [A-Za-z0-9-_.] that starts and ends
  with an alphanumeric character;
* a label value is empty or at most 63 bytes of the same characters, alphanumeric at both ends;
* the annotations, keys and values together, are at most 256 KiB (bytes of UTF-8);
* either map holds strings only (the API server cannot decode anything else: 400, not 422).

Each problem is one field error (`metadata.labels: Invalid value: "a b": name part must consist of ...`); several
are joined as Go's aggregate joins them (`[first, second]`), labels first, keys in sorted order (Go's map order
is random: any order is one the API server could give). Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

ANNOTATIONS_LIMIT = 262_144  # bytes of every annotation's key and value together (apimachinery's TotalAnnotationSizeLimitB)
NAME_MAX = 63  # a key's name part and a label value, in bytes (labelKeyMaxLength, LabelValueMaxLength)
PREFIX_MAX = 253  # a key's prefix, in bytes (DNS1123SubdomainMaxLength)

_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_KEY_RE = re.compile(_KEY_FMT)
_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character")
_VALUE_FMT = f"({_KEY_FMT})?"
_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
              "must start and end with an alphanumeric character")
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _DNS_LABEL + "(\\." + _DNS_LABEL + ")*"
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN_FMT)
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character")


def _bytes(text: str) -> int:
    """Go's len(): UTF-8 bytes (a lone surrogate, which the API server's decoder reads as U+FFFD, is 3)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError: the rule, its examples, and the regex."""
    shown = "".join((" or " if i else "") + f"'{e}', " for i, e in enumerate(examples))  # Go's: "',  or '"
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')" if examples else \
        f"{msg} (regex used for validation is '{fmt}')"


def key_problems(key: str) -> list[str]:
    """Why `key` is no qualified name (a label key; an annotation key lowercased): [] when it is one."""
    parts = key.split("/")
    if len(parts) > 2:
        return ["a valid label key " + _regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if _bytes(prefix) > PREFIX_MAX:
                errs.append(f"prefix part must be no more than {PREFIX_MAX} bytes")
            if not _SUBDOMAIN_RE.fullmatch(prefix):
                errs.append("prefix part " + _regex_error(_SUBDOMAIN_MSG, _SUBDOMAIN_FMT, "example.com"))
    if not name:
        errs.append("name part must be non-empty")
    elif _bytes(name) > NAME_MAX:
        errs.append(f"name part must be no more than {NAME_MAX} bytes")
    if not _KEY_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def value_problems(value: str) -> list[str]:
    """Why `value` is no label value: [] when it is one (the empty string is one)."""
    errs = [f"must be no more than {NAME_MAX} bytes"] if _bytes(value) > NAME_MAX else []
    if value and not _KEY_RE.fullmatch(value):
        errs.append(_regex_error(_VALUE_MSG, _VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _quoted(text: str) -> str:
    """Go's %q, near enough: a double-quoted string with its quotes and control characters escaped."""
    return json.dumps(text, ensure_ascii=False)


def _strings(meta: dict[str, Any], field: str) -> dict[str, str]:
    """metadata.<field> as the API server decodes it: a map of strings; ValueError (its 400: it cannot be
    decoded) for anything else."""
    given = meta.get(field)
    if given is None:
        return {}
    if not isinstance(given, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                              for k, v in given.items()):
        raise ValueError(f"metadata.{field}: must be a map of strings to strings, got "
                         f"{json.dumps(given, sort_keys=True)[:200]}")
    return {k: "" if v is None else v for k, v in given.items()}  # null: Go's decoder leaves the string ""


def decode_nulls(meta: dict[str, Any]) -> None:
    """A null value of metadata.labels or .annotations made "" in place, as the API server's decoder leaves it (Go's
    encoding/json sets no string for null: the map holds its zero value). The official client sends a dict's None
    as null (decision 861)."""
    for field in ("labels", "annotations"):
        given = meta.get(field)
        if isinstance(given, dict) and any(v is None for v in given.values()):
            meta[field] = {k: "" if v is None else v for k, v in given.items()}


def go_lower(text: str) -> str:
    """Go's strings.ToLower (simple case mapping, one rune for one): Python's lower() maps 'İ' (U+0130) to 'i' and a
    combining dot, Go to 'i'; the only unconditional mapping of more than one character (final sigma, the other
    difference, is no ASCII either way). An annotation's key is checked so lowered (decision 861)."""
    return text.replace("\u0130", "i").lower()


def field_errors(meta: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(cause type, field, body) of every problem with `meta`'s labels and annotations, as the API server lists
    them: labels (key, then value), annotations (keys), then the annotations' size. ValueError for a map that is
    not of strings."""
    labels, notes = _strings(meta, "labels"), _strings(meta, "annotations")
    out: list[tuple[str, str, str]] = []
    for k in sorted(labels):
        out += [("FieldValueInvalid", "metadata.labels", f"Invalid value: {_quoted(k)}: {m}") for m in key_problems(k)]
        v = labels[k]
        out += [("FieldValueInvalid", "metadata.labels", f"Invalid value: {_quoted(v)}: {m}")
                for m in value_problems(v)]
    for k in sorted(notes):
        out += [("FieldValueInvalid", "metadata.annotations", f"Invalid value: {_quoted(k)}: {m}")
                for m in key_problems(go_lower(k))]
    if annotations_over(notes):
        out.append(("FieldValueTooLong", "metadata.annotations",
                    f"Too long: may not be more than {ANNOTATIONS_LIMIT} bytes"))
    return out


def annotations_over(notes: dict[str, str]) -> bool:
    """Whether the annotations pass the API server's limit (ValidateAnnotationsSize: bytes of keys and values)."""
    if 4 * sum(len(k) + len(v) for k, v in notes.items()) <= ANNOTATIONS_LIMIT:
        return False  # under it whatever the characters (UTF-8: at most 4 bytes each): nothing encoded (CPU)
    return sum(_bytes(k) + _bytes(v) for k, v in notes.items()) > ANNOTATIONS_LIMIT


def message(kind: str, name: str, errors: list[tuple[str, str, str]]) -> str:
    """The 422's message as the API server words it: `<Kind>.<group> "<name>" is invalid: <field error>`, several
    joined as Go's aggregate joins them (`[<one>, <two>]`, repeats once)."""
    said = list(dict.fromkeys(f"{field}: {body}" for _, field, body in errors))
    return f'{kind} "{name}" is invalid: ' + (said[0] if len(said) == 1 else "[" + ", ".join(said) + "]")
