"""CPU of one `canary` process from its start to its exit, per command, and before/after as a ratio.

The test suite starts `canary` processes by the hundred (docs/benchmarks/suite.md, decisions 931, 965, 985): each
pays the interpreter and the CLI's imports before the command does anything. Each command below is run as its own
process (`python -m canary ...`, the tree's code first on `PYTHONPATH`), its CPU (user + system) read from `wait4`'s
rusage of that child alone, so other processes on the host do not count in it (they slow it, and a loaded host's CPU
seconds still swing: compare runs made side by side, alternated). With `--before TREE` (a checkout or `git archive`
of an older commit, with its `canary/`), every command runs in both trees, one after the other, and the table gives
each tree's median and after/before. Prints a table, exits 0; with --write, writes docs/benchmarks/startup.md.

    git archive <commit> canary | tar -x -C /tmp/before
    .venv/bin/python scripts/bench_startup.py --before /tmp/before --runs 7 --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import benchdoc  # noqa: E402

from canary.sandbox.kubeapi import KubeAPIServer  # noqa: E402
from tests import fleet  # noqa: E402
from tests.support.kube import shipped_istio_objects  # noqa: E402


def commands(kubeconfig: Path, refused: Path) -> list[tuple[str, list[str], int]]:
    """(label, the arguments after `python`, the exit code expected)."""
    canary = ["-m", "canary"]
    return [
        ("python -c pass (the interpreter alone)", ["-c", "pass"], 0),
        ("import canary.cli", ["-c", "import canary.cli"], 0),
        ("canary --version", [*canary, "--version"], 0),
        ("canary --help", [*canary, "--help"], 0),
        ("canary status --help", [*canary, "status", "--help"], 0),
        ("canary promote --help", [*canary, "promote", "--help"], 0),
        ("canary status MODEL (API emulator)", [*canary, "status", "rec-model", "-n", "ml", "--kubeconfig",
                                                str(kubeconfig)], 0),
        ("canary status MODEL (API refused, exit 3)", [*canary, "status", "rec-model", "-n", "ml", "--kubeconfig",
                                                       str(refused)], 3),
        ("canary policy validate policies/default.yaml", [*canary, "policy", "validate",
                                                          str(ROOT / "policies" / "default.yaml")], 0),
    ]


def cpu_of(tree: Path, args: list[str], expected: int) -> float:
    """User + system CPU seconds of `python ARGS` run in `tree`, this child's alone (`wait4`)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "KUBECONFIG": "", "NO_COLOR": "1", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, *args], cwd=tree, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != expected:
        raise SystemExit(f"{' '.join(args)} in {tree}: exit {proc.returncode}, expected {expected}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="an older tree (holding canary/) to compare with")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    trees = ([("before", args.before.resolve())] if args.before else []) + [("after", ROOT)]
    times: dict[tuple[str, str], list[float]] = {}
    load = [os.getloadavg()[0]]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp, KubeAPIServer(seed=shipped_istio_objects()) as api:
        kubeconfig = fleet.write_kubeconfig(Path(tmp) / "kubeconfig", api.url)
        refused = fleet.write_kubeconfig(Path(tmp) / "refused", "http://127.0.0.1:9")
        cases = commands(kubeconfig, refused)
        for run in range(args.runs):
            order = trees if run % 2 == 0 else trees[::-1]  # alternated: neither tree always runs first
            for label, argv, expected in cases:
                for name, tree in order:
                    times.setdefault((label, name), []).append(cpu_of(tree, argv, expected))
            load.append(os.getloadavg()[0])
    body = table(cases, trees, times)
    body += (f"\n\n{args.runs} runs of each, alternated; median CPU (user + system, `wait4` of the child) in seconds;"
             f" load average (1 min) {min(load):.1f}-{max(load):.1f} over {time.time() - started:.0f} s.")
    print(body)
    if args.write:
        path = benchdoc.write("startup", title="CPU of a `canary` process's start-up", body=body)
        print(f"\nwritten: {path}")


def table(cases: list[tuple[str, list[str], int]], trees: list[tuple[str, Path]],
          times: dict[tuple[str, str], list[float]]) -> str:
    names = [name for name, _ in trees]
    head = "| command | " + " | ".join(f"{n} (s)" for n in names) + (" | after / before |" if len(names) == 2 else " |")
    rows = [head, "|" + "---|" * (len(names) + 1 + (len(names) == 2))]
    for label, _, _ in cases:
        med = [statistics.median(times[(label, n)]) for n in names]
        cells = [f"{m:.3f}" for m in med] + ([f"{med[1] / med[0]:.2f}"] if len(names) == 2 else [])
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
