"""The tracker's database: PostgreSQL through asyncpg (`postgres`), and an embedded server for
running with no database installed (`embedded`).

All SQL is in `tracker/store/postgres.py` and `tracker/store/migrations/*.sql`.
"""

from tracker.store.postgres import (
    Store,
    VehicleRow,
    WriteResult,
    mask_password,
    migrations,
    open_store,
    upgrade,
)

__all__ = [
    "Store",
    "VehicleRow",
    "WriteResult",
    "mask_password",
    "migrations",
    "open_store",
    "upgrade",
]
