"""No test changes the API emulator's stored objects by hand (decision 841).

A stored object is shared by the store, the watch log and the answers (decision 764): changed in place (or popped
from `handler.objects`) it is a change no watch, resourceVersion or generation shows, which no API server makes.
tests/integration/test_promote_history_end.py stripped a VirtualService's record so, and `canary report` read a
cluster that cannot exist; test_sweep_ends_attack.py popped DestinationRules no watch saw go. A test changes the
store through the API, or the emulator's helpers (`api.edit`, `api.delete`, `api.handler.put_object`). This walks
every test's source: a name bound to `<x>.handler.objects[...]` (not a copy) that is then mutated, or
`handler.objects` itself mutated, is refused, naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATORS = {"pop", "popitem", "update", "setdefault", "clear", "append", "extend", "insert", "remove",
            "__setitem__", "__delitem__", "sort", "reverse"}


def _is_store(node: ast.AST) -> bool:
    """`<anything>.handler.objects`."""
    return isinstance(node, ast.Attribute) and node.attr == "objects" and \
        isinstance(node.value, ast.Attribute) and node.value.attr == "handler"


def _a_stored_object(node: ast.AST) -> bool:
    """`<store>[key]` or `<store>.get(key)`: a stored object itself, not a copy (reviewer r-al: `.get` was missed)."""
    if isinstance(node, ast.Subscript):
        return _is_store(node.value)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and \
        _is_store(node.func.value)


def _stored_objects(node: ast.AST) -> bool:
    """`<store>.values()` / `<store>.items()`: iterated, the stored objects themselves."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
        node.func.attr in ("values", "items") and _is_store(node.func.value)


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node


def _mutated(node: ast.AST) -> list[ast.AST]:
    """The expressions `node` changes in place: targets of an assignment or a delete, receivers of a mutator."""
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t for t in targets if isinstance(t, (ast.Subscript, ast.Attribute))]
    if isinstance(node, ast.Delete):
        return [t for t in node.targets if isinstance(t, (ast.Subscript, ast.Attribute))]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
        return [node.func.value]
    return []


def by_hand(source: str) -> list[int]:
    """Lines of `source` that change the emulator's store by hand."""
    tree = ast.parse(source)
    aliases: set[str] = set()  # names bound to a stored object itself
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _a_stored_object(node.value):
            aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.For) and _stored_objects(node.iter):  # (a comprehension's names are its own)
            # `for obj in <store>.values()`, `for key, obj in <store>.items()`: the objects themselves
            aliases |= {t.id for t in ast.walk(node.target) if isinstance(t, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        for target in _mutated(node):
            inner = target
            while isinstance(inner, (ast.Subscript, ast.Attribute)) and not _is_store(inner):
                inner = inner.value
            root = _root(target)
            if _is_store(inner) or (isinstance(root, ast.Name) and root.id in aliases):
                lines.append(node.lineno)
    return sorted(set(lines))


def test_no_test_changes_the_emulators_store_by_hand() -> None:
    texts = {path: path.read_text(encoding="utf-8") for path in sorted(ROOT.rglob("*.py"))}
    found = {f"{path.relative_to(ROOT.parent)}:{line}" for path, text in texts.items() if "handler.objects" in text
             for line in by_hand(text)}
    assert not found, f"changed by hand (use api.edit / api.delete / put_object): {sorted(found)}"


def test_the_walk_finds_an_in_place_edit_and_a_pop_and_passes_a_copy() -> None:
    assert by_hand('vs = api.handler.objects[k]\nvs["metadata"]["annotations"].pop("x")\n') == [2]
    assert by_hand('api.handler.objects.pop(k)\n') == [1]
    assert by_hand('del api.handler.objects[k]\n') == [1]
    assert by_hand('api.handler.objects[k]["spec"] = {}\n') == [1]
    assert by_hand('vs = copy.deepcopy(api.handler.objects[k])\nvs["spec"] = {}\n') == []
    assert by_hand('with api.handler.lock:\n    obj = api.handler.objects[k]\napi.handler._delete(k, obj)\n') == []


def test_the_walk_finds_a_stored_object_bound_by_get_or_a_loop() -> None:
    """Bound by `.get(key)`, or by iterating `.values()` / `.items()`: the stored objects themselves (reviewer r-al;
    fails without: [] each)."""
    assert by_hand('vs = api.handler.objects.get(k)\nvs["spec"] = {}\n') == [2]
    assert by_hand('for o in api.handler.objects.values():\n    o["metadata"].pop("x")\n') == [2]
    assert by_hand('for k, o in api.handler.objects.items():\n    o["spec"]["a"] = 1\n') == [2]
    assert by_hand('n = [k for k, o in api.handler.objects.items() if o["spec"]]\n') == []
