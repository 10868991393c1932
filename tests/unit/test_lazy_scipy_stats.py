"""`scipy.stats` is imported where it is first used, not by every `canary` process (decision 733).

`import scipy.stats` was 0.4-0.5 s of a `canary promote` process's 2.2-2.5 s of CPU, and a promote that holds a
route, waits for one or is refused never uses it: `plan` and `plan_layout` name it through
`canary.analysis.stats.LAZY_STATS`, which imports it at the first attribute read. One fresh process imports
what a promote, the controller and `canary plan` import, and must not have loaded it; then one read loads it.
"""

from __future__ import annotations

import subprocess
import sys

MODULES = ("canary.cli", "canary.runner", "canary.reconcile", "canary.analysis.judge", "canary.analysis.plan",
           "canary.analysis.plan_layout")


def test_the_cli_and_the_plan_modules_load_without_scipy_stats_until_it_is_read() -> None:
    code = (f"import sys\nfor m in {MODULES!r}: __import__(m)\nprint('scipy.stats' in sys.modules)\n"
            "from canary.analysis import plan_layout\nprint(plan_layout.st.norm.ppf(0.975))\n"
            "print('scipy.stats' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, value, after = out.stdout.split()
    assert before == "False", out.stdout
    assert abs(float(value) - 1.959963984540054) < 1e-12 and after == "True", out.stdout
