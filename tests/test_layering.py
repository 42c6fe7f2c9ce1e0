"""The house plan (docs/architecture.md), enforced on the source tree by walking every
import — at module level and inside functions alike."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("privacy", "client", "server", "simulations")
# Flower is imported by the two apps, the one message codec below them, the simulation
# backends and the operator's Control API calls of a local deployment; algorithm code never
# imports it.
FLOWER_ALLOWED = {
    "client/app.py",
    "server/app.py",
    "privacy/protocol/records.py",
    "simulations/backends/clientapp_worker.py",
    "simulations/backends/flower_run.py",
    "simulations/backends/inprocess.py",
    "simulations/backends/ray_engine.py",
    "simulations/backends/replay.py",
    "simulations/backends/supernode.py",
    "simulations/backends/tracing.py",
    "simulations/deploy/control.py",
}
FORBIDDEN = {  # part → fedseg parts it must not import
    "privacy": {"client", "server", "simulations"},
    "client": {"server", "simulations"},
    "server": {"client", "simulations"},
    "simulations": set(),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def sources(part: str) -> list[Path]:
    return sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", PARTS)
def test_each_part_imports_only_what_lies_below_it(part):
    offences = []
    for path in sources(part):
        for module in imported_modules(path):
            pieces = module.split(".")
            if pieces[0] == "fedseg" and len(pieces) > 1 and pieces[1] in FORBIDDEN[part]:
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offences == []


def test_flower_is_imported_only_by_the_apps_the_codec_and_the_backends():
    offences = []
    for part in PARTS:
        for path in sources(part):
            relative = str(path.relative_to(ROOT))
            uses_flower = any(m.split(".")[0] == "flwr" for m in imported_modules(path))
            if uses_flower and relative not in FLOWER_ALLOWED:
                offences.append(relative)
    assert offences == []


def test_the_walk_sees_imports_inside_functions():
    """The check above would be blind if it read module-level imports only."""
    sample = ROOT / "server" / "app.py"  # imports the recommender inside functions
    assert "fedseg.server.recommender.rounds" in imported_modules(sample)
