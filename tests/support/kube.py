"""Test fixtures: kube (owned by one writer)."""
