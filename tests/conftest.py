"""Shared fixtures live in tests/support/, one module per real component.

Logs never go to stdout (stdout is for a command's requested output only). structlog's own
default prints to stdout, so a logger used before any command configured logging -- e.g. a
notifier thread left retrying by an earlier test -- would print into a later in-process
command's captured stdout. The suite starts with the product's configuration, on stderr.
"""

import sys

from canary import logs

logs.configure(fmt="console", stream=sys.__stderr__)

pytest_plugins = ["tests.support.kube", "tests.support.prom", "tests.support.triton"]
