"""The core (`tracker/core`) stays pure: no I/O libraries, no clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "tracker" / "core"
FORBIDDEN_MODULES = {"asyncio", "asyncpg", "paho", "fastapi", "socket", "time", "os", "pathlib"}
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time")}


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io_and_reads_no_clock(module: Path) -> None:
    tree = ast.parse(module.read_text(), filename=str(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{module.name} imports {name}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            assert (owner, node.attr) not in CLOCK_CALLS, f"{module.name} reads the clock"


def test_the_purity_check_sees_the_core() -> None:
    assert {p.name for p in CORE.glob("*.py")} >= {"matcher.py", "network.py", "model.py"}
