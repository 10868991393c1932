"""Policy YAML read strictly and within bounds: no silent conversions, no bombs.

A policy arrives as text from a file or a ConfigMap, written by hand, so
PyYAML's safe loader is not strict enough:

- booleans are ``true``/``false``: YAML 1.1's ``yes``/``no``/``on``/``off``
  are refused when unquoted (PyYAML would read ``on`` as True, kubectl too);
- integers must be plain decimal and floats have no base-60 form (YAML 1.1
  reads ``010`` as 8 and ``1:30`` as 90); dates stay the text that was
  written; duplicate keys are refused.

Malformed input of any kind (bytes, bombs, nesting) gives one `PolicyError`,
never another exception: the text is at most `MAX_BYTES`, and composing stops
at `MAX_VALUES` nodes or `MAX_DEPTH` levels. `too_big` bounds the same for a
policy that arrives already parsed (a CanaryRollout's spec).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from canary.errors import PolicyError
from canary.filekind import read_bounded


def show(value: Any) -> str:
    """`policy_fields.show`, loaded when a message needs it: policy_fields loads pydantic, and this loader also
    reads every kubeconfig (`canary status` loaded the policy models for it: decision 965)."""
    from canary.policy_fields import show as shown

    return shown(value)


MAX_VALUES, MAX_DEPTH = 10_000, 32
MAX_BYTES = 256 << 10  # 80x the shipped default policy; keeps the pure-Python parser under ~0.5 s on any input
# a warm-up sample file (`gates.triton.sample_file`): 64x a ConfigMap's whole 1 MiB, where a CanaryRollout's
# samples live; a few requests of real inputs as JSON, not a data set (decision 670)
MAX_SAMPLE_BYTES = 64 << 20


def too_big(raw: Any) -> str | None:
    """Bound what validation walks: a YAML alias bomb is small text but a huge (or cyclic) graph."""
    stack, seen = [(raw, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES} values (YAML aliases expanding?)"
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in value)
    return None


class _Loader(yaml.SafeLoader):
    """safe_load without YAML 1.1's silent conversions (see the module docstring), and bounded:
    composing stops at MAX_VALUES nodes or MAX_DEPTH levels, long before the pure-Python
    parser has spent a second or Python's recursion limit is near."""

    max_values = MAX_VALUES

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nodes = self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.nodes, self.depth = self.nodes + 1, self.depth + 1
        if self.nodes > self.max_values or self.depth > MAX_DEPTH:
            what = (f"more than {self.max_values} values" if self.nodes > self.max_values
                    else f"deeper than {MAX_DEPTH} levels")
            raise yaml.composer.ComposerError(None, None, f"too large: {what}", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag != "tag:yaml.org,2002:merge" and isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {show(key_node.value)}",
                                                            key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


class _ManifestLoader(_Loader):
    """`_Loader` for a Kubernetes manifest (a retraining Job template): an integer with a leading 0 is octal, as
    kubectl reads it, since that is how a file mode is written (`defaultMode: 0400`, the Kubernetes docs' way).
    Refused as a policy's `010` is, its hint ("plain decimal") led to `defaultMode: 400`, mode 0620 (791)."""


def _strict_scalar(kind: str, ok: str, hint: str, loader: type[_Loader] = _Loader) -> None:
    base, pattern = yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{kind}"], re.compile(ok)

    def construct(loader: _Loader, node: Any) -> Any:
        text = str(node.value)
        problem = hint if not pattern.fullmatch(text) else "too many digits" if len(text) > 40 else ""
        if problem:
            raise yaml.constructor.ConstructorError(None, None, f"{show(text)}: {problem}", node.start_mark)
        return base(loader, node)

    loader.add_constructor(f"tag:yaml.org,2002:{kind}", construct)


_strict_scalar("bool", r"(?i)(true|false)\Z", "write true or false (or quote it for a string)")
_strict_scalar("int", r"[-+]?(0|[1-9][0-9_]*)\Z", "write integers in plain decimal (YAML 1.1 reads 010 as 8 "
               "and 1:30 as 90), or quote it for a string")
_strict_scalar("float", r"[^:]*\Z", "no base-60 numbers (YAML 1.1 reads 1:30.0 as 90.0); quote it for a string")
_strict_scalar("int", r"[-+]?(0|[1-9][0-9_]*|0[0-7_]+)\Z", "write integers in decimal, a file mode in octal with a "
               "leading 0 (0440, as kubectl reads it), or quote it for a string", _ManifestLoader)
_Loader.yaml_implicit_resolvers = {  # dates stay the text that was written
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        said = " ".join(x for x in (exc.context, exc.problem) if x)  # an empty context left a double space
        return f"line {mark.line + 1}, column {mark.column + 1}: {said}".strip()
    return " ".join(str(exc).split())


def load_text(text: str | bytes, *, file: str = "<policy>", max_bytes: int = MAX_BYTES, manifest: bool = False,
              max_values: int = MAX_VALUES) -> Any:
    """The data in YAML text (a file's, a ConfigMap's), read with the strict loader; PolicyError if unreadable.
    Every YAML a person gives is read so (a policy, a retraining Job template: decision 770). `manifest`: a
    Kubernetes object's, whose `0400` is octal as kubectl reads it (`_ManifestLoader`, decision 791)."""
    if len(text) > max_bytes:
        raise PolicyError(file, "", f"too large: more than {max_bytes} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(file, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        loader = (_ManifestLoader if manifest else _Loader)(text)
        loader.max_values = max_values  # a kubeconfig of hundreds of clusters holds more (decision 866)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise PolicyError(file, "", f"not valid YAML: {_yaml_problem(exc)[:300]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # a constructor's own (!!float abc)
        raise PolicyError(file, "", f"not valid YAML: {type(exc).__name__}: {str(exc)[:200]}") from None


def load_documents(path: str | Path, *, max_bytes: int = MAX_BYTES) -> list[Any]:
    """The documents of a multi-document YAML file of Kubernetes objects (`---` between them; the empty ones
    dropped), read as `read_file` reads a policy (bounded, a FIFO's writer waited on) and parsed with the strict
    loader of a manifest (`load_text`'s `manifest`): a duplicate key, `yes`, a bomb refused naming the line.
    PolicyError naming the file (decision 834: the sandbox's seeds and manifests were read with `safe_load_all`,
    a key written twice read as its last value)."""
    try:
        data = read_bounded(path, max_bytes)
    except (OSError, ValueError) as exc:
        raise PolicyError(str(path), "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > max_bytes:
        raise PolicyError(str(path), "", f"too large: more than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        loader, docs = _ManifestLoader(text), []
        try:
            while loader.check_data():
                loader.nodes = 0  # MAX_VALUES bounds each object, not the file: a seed holds many
                docs.append(loader.get_data())
        finally:
            loader.dispose()
        return [d for d in docs if d is not None]
    except yaml.YAMLError as exc:
        raise PolicyError(str(path), "", f"not valid YAML: {_yaml_problem(exc)[:300]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise PolicyError(str(path), "", f"not valid YAML: {type(exc).__name__}: {str(exc)[:200]}") from None


def read_samples(path: Path) -> str:
    """A warm-up sample file's text, read within bounds: OSError, or ValueError saying why, for what is no
    regular file (a device or a FIFO: `/dev/zero` filled the memory, a FIFO held the process; opened without
    blocking, so a FIFO with no writer is refused too) or is larger than MAX_SAMPLE_BYTES (not read)."""
    # never this process's controlling terminal, as `filekind`'s readers (decision 914)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file: a device or a pipe has no end to read to")
        # its size first: one past the bound is not read (one grown since is cut at one byte past it)
        if st.st_size > MAX_SAMPLE_BYTES or len(data := f.read(MAX_SAMPLE_BYTES + 1)) > MAX_SAMPLE_BYTES:
            raise ValueError(f"too large: more than {MAX_SAMPLE_BYTES >> 20} MiB (warm-up samples are a few "
                             "requests)")
    return data.decode("utf-8")


def read_file(path: Path) -> bytes:
    """A policy file's bytes, one more than MAX_BYTES at most (so `load_text` can tell it is too large)."""
    try:
        return read_bounded(path, MAX_BYTES)  # a FIFO with no writer held `open` forever (decision 746)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise PolicyError(str(path), "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
