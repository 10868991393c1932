"""Sums a `CANARY_TEST_CPU_LOG` file (tests/support/cpu_log.py) by test file and prints the heaviest.

Usage: `CANARY_TEST_CPU_LOG=/tmp/cpu.jsonl bash scripts/test.sh; python scripts/suite_cpu.py /tmp/cpu.jsonl [N]`.
Prints one row per test file, heaviest CPU (worker + reaped children) first, then the N heaviest tests.
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


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
