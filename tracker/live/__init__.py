"""The live feed: the latest state of every vehicle, broadcast to websocket clients.

- `tracker.live.vehicle`: `LiveVehicle`, one vehicle's state as the map sees it.
- `tracker.live.hub`: `Hub`, `Subscription`, `Client`: who wants which vehicles, the tick that
  sends each client at most one message, bounded per client. Asyncio only, no web framework.
- `tracker.live.ws`: the `/ws/live` websocket endpoint (FastAPI), a thin shell over the hub.

This package imports no web framework itself, so the pipeline can use the hub without FastAPI.
"""

from tracker.live.hub import (
    Client,
    ClientClosedError,
    Hub,
    HubStats,
    Subscription,
    SubscriptionError,
)
from tracker.live.vehicle import LiveVehicle

__all__ = [
    "Client",
    "ClientClosedError",
    "Hub",
    "HubStats",
    "LiveVehicle",
    "Subscription",
    "SubscriptionError",
]
