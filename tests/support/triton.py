"""Test fixtures: triton (owned by one writer)."""
