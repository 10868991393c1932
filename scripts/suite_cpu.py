"""Sums a `CANARY_TEST_CPU_LOG` file (tests/support/cpu_log.py) by test file and prints the heaviest.

Usage: `CANARY_TEST_CPU_LOG=/tmp/cpu.jsonl bash scripts/test.sh; python scripts/suite_cpu.py /tmp/cpu.jsonl [N]`.
Prints one row per test file, heaviest CPU (worker + reaped children) first, then the N heaviest tests.

`python scripts/suite_cpu.py /tmp/cpu.jsonl --weights tests/suite_weights.json` writes each file's wall seconds in
that run instead: the order in which scripts/test.sh hands files to its workers, longest first
(tests/support/file_order.py).
"""

import json
import sys
from collections import defaultdict


def main(path: str, top: int = 25) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for row in rows:
        acc = files[row["test"].split("::")[0]]
        acc[0] += row["wall"]
        acc[1] += row["self"]
        acc[2] += row["children"]
        acc[3] += 1
    total = [sum(acc[i] for acc in files.values()) for i in range(3)]
    print(f"{len(rows)} tests, {len(files)} files: wall {total[0]:.0f} s, CPU self {total[1]:.0f} s, "
          f"children {total[2]:.0f} s")
    print(f"{'file':<62} {'tests':>5} {'wall s':>8} {'self s':>8} {'kids s':>8} {'cpu s':>8}")
    for name, acc in sorted(files.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
        print(f"{name:<62} {acc[3]:>5} {acc[0]:>8.1f} {acc[1]:>8.1f} {acc[2]:>8.1f} {acc[1] + acc[2]:>8.1f}")
    print()
    for row in sorted(rows, key=lambda r: -(r["self"] + r["children"]))[:top]:
        print(f"{row['self'] + row['children']:>7.1f} cpu {row['wall']:>7.1f} wall  {row['test']}")


def weights(path: str, out: str) -> None:
    """Write {test file: wall seconds of its tests in the run `path` logged} to `out`, heaviest first."""
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    walls: dict[str, float] = defaultdict(float)
    for row in rows:
        walls[row["test"].split("::")[0]] += row["wall"]
    ranked = dict(sorted(((name, round(wall, 1)) for name, wall in walls.items()), key=lambda kv: (-kv[1], kv[0])))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(ranked, f, indent=0)
        f.write("\n")
    print(f"{len(ranked)} files, {sum(ranked.values()):.0f} s of wall, written to {out}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--weights":
        weights(sys.argv[1], sys.argv[3])
    else:
        main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
