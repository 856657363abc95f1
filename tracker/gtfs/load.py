"""Load a GTFS feed's `Network`, cached on disk by the feed's content.

`load_network(path)` is the entry point: it returns the cached network when the feed's bytes were
seen before, else prepares it with gtfs-kit (`tracker.gtfs.build`; a few seconds on a large feed)
and stores it for next time. Broken feeds raise `FeedError` naming the file, line and problem;
recoverable problems (a trip with an unknown stop, a shape with one point) are worked around and
listed in `Network.warnings`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path

from tracker.core.network import Network
from tracker.errors import FeedError

log = logging.getLogger(__name__)

# Bump when the prepared format or the preparation changes, so stale caches are not used.
NETWORK_FORMAT = 5


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/bus-tracker`, else `~/.cache/bus-tracker` (read when called)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bus-tracker"


def feed_hash(path: Path) -> str:
    """SHA-256 of the feed's bytes (a zip file, or the .txt files of a folder)."""
    digest = hashlib.sha256()
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_network(path: Path, *, cache_dir: Path | None = None, use_cache: bool = True) -> Network:
    """The prepared network of a GTFS feed, from the on-disk cache when possible.

    `cache_dir` defaults to `default_cache_dir()`; `use_cache=False` always builds afresh.
    """
    if use_cache and cache_dir is None:
        cache_dir = default_cache_dir()
    if not use_cache:
        cache_dir = None
    if not path.exists():
        raise FeedError(str(path), "no such file or folder; pass a GTFS .zip or folder")
    key = feed_hash(path)
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"network-{key[:24]}-v{NETWORK_FORMAT}.pickle"
        if cache_file.exists():
            try:
                with cache_file.open("rb") as handle:
                    network = pickle.load(handle)
                if isinstance(network, Network) and network.feed_hash == key:
                    log.info("network of %s loaded from cache %s", path, cache_file)
                    return network
            except Exception as exc:  # a damaged cache file can fail in any way: rebuild
                log.warning("ignoring unreadable network cache %s: %r", cache_file, exc)
    network = build_network(path, feed_hash=key)
    if cache_file is not None:
        _write_atomically(cache_file, network)
    return network


def _write_atomically(cache_file: Path, network: Network) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(network, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)
    except OSError as exc:  # a read-only cache folder must not stop the tracker
        log.warning("could not write network cache %s: %s", cache_file, exc)


def build_network(path: Path, *, feed_hash: str = "") -> Network:
    """Prepare a feed for matching (slow path; `load_network` caches the result). gtfs-kit and
    pandas are imported here only, by `tracker.gtfs.build`."""
    from tracker.gtfs.build import build_network as build

    return build(path, feed_hash=feed_hash)


__all__ = ["NETWORK_FORMAT", "build_network", "default_cache_dir", "feed_hash", "load_network"]
