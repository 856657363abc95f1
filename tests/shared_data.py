"""Where the project's real data is: ``../shared/data``, beside the checkout (its README says what
each feed is good for and its terms). Tests that read it fail where it is absent, rather than
skip: a skip would hide a missing part of the test set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def required(path: Path = SHARED_DATA) -> Path:
    """`path` (a file or folder of the shared data); the test fails, saying why, if it is absent."""
    if not path.exists():
        pytest.fail(f"{path} is absent: the project's real data sits beside the checkout, in "
                    "../shared/data", pytrace=False)  # fmt: skip
    return path
