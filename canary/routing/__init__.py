"""Traffic routers: how weights reach the data plane (Istio today)."""
