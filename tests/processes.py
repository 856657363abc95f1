"""Whether a process still runs, for the tests that check what a service leaves behind."""

from __future__ import annotations

import psutil


def alive(process: psutil.Process | int) -> bool:
    """Whether `process` (or the process of that pid) runs; a zombie (exited, not yet reaped
    by its parent) does not."""
    try:
        if isinstance(process, int):
            process = psutil.Process(process)
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
