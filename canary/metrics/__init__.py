"""Metrics providers: how both arms are measured (Prometheus today)."""
