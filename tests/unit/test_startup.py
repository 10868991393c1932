"""`canary.startup.after_import`: a call made once a module loads, not before (decision 985)."""

from __future__ import annotations

import importlib
import sys
import subprocess
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from canary import startup


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "canary_startup_probe.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("canary_startup_probe", None)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, startup._AfterImport)]


def child(script: str) -> str:
    """What `python -c script` prints, run from the checkout in a fresh interpreter (stderr shown on a failure)."""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_the_call_waits_for_the_modules_import_and_is_made_once(module_dir: Path) -> None:
    seen: list[Any] = []
    startup.after_import("canary_startup_probe", seen.append)
    startup.after_import("canary_startup_probe", seen.append)  # asked again before it loads: still one call
    assert seen == [] and "canary_startup_probe" not in sys.modules
    module = importlib.import_module("canary_startup_probe")
    assert seen == [module] and module.VALUE == 1
    # the finder stays on sys.meta_path (never removed while another thread's import may walk it), answering nothing
    assert all(f.used for f in sys.meta_path if isinstance(f, startup._AfterImport))
    assert module.__loader__ is module.__spec__.loader and not isinstance(module.__loader__, startup._ThenLoader)


def test_a_module_already_loaded_gets_the_call_at_once(module_dir: Path) -> None:
    module = importlib.import_module("canary_startup_probe")
    seen: list[Any] = []
    startup.after_import("canary_startup_probe", seen.append)
    assert seen == [module]


def test_a_builtin_modules_call_is_made_once_and_other_builtins_load_untouched() -> None:
    """A builtin module's loader is a class (`BuiltinImporter`) shared by every builtin module: patching its
    `exec_module` made every later builtin import call `then` again (decision 1025). In a child, where neither
    module is loaded yet."""
    script = ("import sys\nfrom canary import startup\nseen = []\n"
              "assert 'xxsubtype' not in sys.modules and '_symtable' not in sys.modules\n"
              "startup.after_import('xxsubtype', lambda m: seen.append(m.__name__))\n"
              "import xxsubtype\nimport _symtable\nprint(seen, type(xxsubtype.__loader__).__name__)\n")
    assert child(script) == "['xxsubtype'] type"


def test_the_finder_never_takes_itself_off_meta_path(module_dir: Path) -> None:
    """Removing itself from `sys.meta_path` inside `find_spec` shifted the list under any import walking it at that
    moment (another thread's: it skipped the finder after ours, `BuiltinImporter`). The list is left as it is."""
    startup.after_import("canary_startup_probe", lambda m: None)
    before = list(sys.meta_path)
    importlib.import_module("canary_startup_probe")
    assert sys.meta_path == before


def test_logs_takes_a_structlog_without_use_rich() -> None:
    """structlog 24.1 and 24.2 (pyproject takes >= 24.1) have no `use_rich` on `ExceptionDictTransformer`: passing it
    made `import canary.logs`, so every command, die with a TypeError (decision 1026). A transformer of their shape."""
    from canary import logs

    made: list[dict[str, Any]] = []

    class Before243:
        def __init__(self, **kw: Any) -> None:
            if "use_rich" in kw:
                raise TypeError("__init__() got an unexpected keyword argument 'use_rich'")
            made.append(kw)

        def __call__(self, exc_info: Any) -> list[dict[str, Any]]:
            return [{"exc_type": exc_info[0].__name__}]

    renderer = logs.dict_tracebacks(Before243)
    assert made == [{}]
    try:
        raise ValueError("x")
    except ValueError:
        out = renderer(None, "error", {"event": "e", "exc_info": True})
    assert out["exception"] == [{"exc_type": "ValueError"}]


def test_structlog_is_imported_plainly_while_another_thread_runs() -> None:
    """`import_structlog` makes rich unimportable for the whole process while structlog loads: another thread's
    `import rich.console` then would fail with ImportError. With a second thread alive it imports structlog as is
    (decision 1027). In a child; the thread waits on an event, so nothing depends on timing."""
    script = ("import sys, threading\nfrom canary import startup\nhold = threading.Event()\n"
              "t = threading.Thread(target=hold.wait)\nt.start()\nstartup.import_structlog()\nhold.set()\nt.join()\n"
              "print('structlog' in sys.modules, 'rich' in sys.modules)\n")
    assert child(script) == "True True"
