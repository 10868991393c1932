"""Shared fixtures live in tests/support/, one module per real component."""

pytest_plugins = ["tests.support.kube", "tests.support.prom", "tests.support.triton"]
