"""What a `canary` process leaves unloaded until it is used: the start-up every command pays (decision 985).

The test suite starts `canary` processes, and on-call's `canary status` is one: each paid its imports first, and
two libraries loaded a good part of them on their own import, whatever the command, for printing it did not do
(docs/benchmarks/startup.md):

- `import structlog` imports `structlog.dev` and `structlog.tracebacks`, which import rich's console, traceback
  and pretty printers (and with them pygments and attrs) to be ready to draw an exception's traceback. No line
  canary logs carries `exc_info` (errors are events with their fields; a library's record is formatted by
  `logs._StdlibRecords`), and `logs.configure` names its exception formatters itself, so those printers were never
  called. `import_structlog` imports structlog with `rich` kept out of its reach: structlog takes the branch it
  takes where rich is not installed, and rich stays importable for those who draw with it (`display`, `--help`).
- typer prints help and usage errors through `typer.rich_utils` (rich's markdown, markdown-it, rich's traceback),
  which typer itself imports only when it prints one; `cli_help.pipe_safe_help` imported it at start to make its
  consoles safe on a broken pipe. `after_import` lets it do that when typer loads the module, not before.

Neither changes what any command prints or exits with (tests/unit/test_help_readable.py, test_logs_*.py;
tests/unit/test_cli_startup_imports.py checks what a command loads, never how long it took)."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

# the modules structlog's own import would load only to draw exception tracebacks with rich, and greenlet, which only
# its deprecated `structlog.threadlocal` reads (canary binds its context with `structlog.contextvars`)
_LEFT_OUT_OF_STRUCTLOG = ("rich", "rich.console", "rich.traceback", "rich.pretty", "greenlet")


def import_structlog() -> None:
    """Import structlog, if it is not loaded yet, without letting it load rich (see the module's docstring). Only
    while this is the process's one thread: `sys.modules` is the process's, and another thread's `import rich` in the
    window would fail; `canary.__main__` and the sandbox's Triton child call it before starting any."""
    if "structlog" in sys.modules:
        return
    if threading.active_count() > 1:  # another thread could import rich inside the window: plain import (1027)
        importlib.import_module("structlog")
        return
    kept_out = [name for name in _LEFT_OUT_OF_STRUCTLOG if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None  # type: ignore[assignment]  # `import rich...` raises ImportError meanwhile
    try:
        importlib.import_module("structlog")
    finally:
        for name in kept_out:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]  # rich importable again, for whoever draws with it


class _AfterImport:
    """A meta path finder that lets one module load as it would and then calls `then(module)` on it, once.

    It never takes itself off `sys.meta_path` (another thread's import walking the list at that moment would skip the
    finder after it: decision 1025): once used it answers None for every name, one comparison. The module's own
    loader is wrapped, never patched: a builtin or frozen module's loader is a class shared by every such module."""

    def __init__(self, name: str, then: Callable[[Any], None]) -> None:
        self.name, self.then, self.used = name, then, False
        self._lock = threading.Lock()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name or self.used:
            return None
        with self._lock:
            if self.used:
                return None
            self.used = True  # before the lookup below, which asks this finder again
        from importlib.util import find_spec

        spec = find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, self.then)
        return spec


class _ThenLoader:
    """`loader`, with `then(module)` called after it executes the module; the module keeps `loader` as its own."""

    def __init__(self, loader: Any, then: Callable[[Any], None]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.then(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def after_import(name: str, then: Callable[[Any], None]) -> None:
    """Call `then(module)` once the module `name` is imported: now if it is loaded already, else when something
    first imports it (one pending call per name: a second request for the same name before it loads is dropped)."""
    module = sys.modules.get(name)
    if module is not None:
        then(module)
        return
    if not any(isinstance(f, _AfterImport) and f.name == name and not f.used for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, then))
