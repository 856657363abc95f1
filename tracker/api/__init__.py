"""The HTTP API of the live service (FastAPI routers); see `tracker.api.http`."""
