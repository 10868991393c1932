"""Test fixtures: prom (owned by one writer)."""
