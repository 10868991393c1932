"""Shared fixtures live in tests/support/, one module per real component.

Logs never go to stdout (stdout is for a command's requested output only). structlog's own
default prints to stdout, so a logger used before any command configured logging -- e.g. a
notifier thread left retrying by an earlier test -- would print into a later in-process
command's captured stdout. The suite starts with the product's configuration, on stderr, and
every test gets it back afterwards: an in-process command configures logging onto its runner's
stream, which is closed once the command returns, and every later log line would then fail
("I/O operation on closed file").
"""

import sys
from collections.abc import Iterator

import pytest
import structlog

from canary import logs

logs.configure(fmt="console", stream=sys.__stderr__)

pytest_plugins = ["tests.support.kube", "tests.support.prom", "tests.support.triton"]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
