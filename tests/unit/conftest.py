"""The tiny feeds of `tests.feeds` as prepared networks, shared by the unit tests.

Each is built once per test module that asks for it; networks are read-only. A module may
define a fixture of the same name to use something else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import feeds
from tracker.core.network import Network
from tracker.gtfs.load import build_network


def build_feed(maker: Callable[[Path], Path], tmp_path_factory: pytest.TempPathFactory) -> Network:
    """The network of the feed `maker` writes into a fresh temporary folder."""
    return build_network(maker(tmp_path_factory.mktemp("feed")))


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.loop_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.variants_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def two_directions(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.two_directions_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def overnight(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.overnight_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def dst(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.dst_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def ramadan(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.casablanca_ramadan_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def frequency(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.frequency_feed, tmp_path_factory)


@pytest.fixture(scope="module")
def no_shape(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(feeds.no_shape_feed, tmp_path_factory)
