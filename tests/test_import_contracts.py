"""The import contracts in .importlinter run in `make test` (lint-imports). Each `ignore_imports` line
there is a door to something heavy (torch, the hub library, mediapipe); this checks that every door is
an import made inside a function, so importing the module stays light and the heavy package loads only
when that function runs."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _doors() -> list[tuple[str, str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    doors = []
    for section in config.sections():
        for line in config[section].get("ignore_imports", "").splitlines():
            if line.strip():
                importer, imported = (part.strip() for part in line.split("->"))
                doors.append((importer, imported))
    return sorted(set(doors))


def _source(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"


def _imports_of(tree: ast.AST, target: str) -> list[bool]:
    """For each import of `target` (or a submodule of it): whether it sits inside a function."""
    found: list[bool] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        found.extend(in_function for name in names if name == target or name.startswith(f"{target}."))
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def test_the_contracts_name_their_doors() -> None:
    assert ("models.face", "mediapipe") in _doors()


@pytest.mark.parametrize(("importer", "imported"), _doors())
def test_every_door_to_a_heavy_package_is_a_lazy_import(importer: str, imported: str) -> None:
    tree = ast.parse(_source(importer).read_text())
    found = _imports_of(tree, imported)
    assert found, f"{importer} does not import {imported}: drop the ignore line"
    assert all(found), f"{importer} imports {imported} at module level: the module is no longer light"


def test_the_web_tier_builds_a_rig_without_the_animator(tmp_path: Path) -> None:
    """In a fresh interpreter: the web app, then a rig through its one door, and still neither the portrait
    animator nor its warp is loaded (the mesh is all the web tier needs of the portrait package)."""
    import subprocess
    import sys

    script = f"""
import io, sys
from matplotlib import cbook
from app.core.config import Settings
from app.web.main import create_app
from app.core.service.rigs import rig_json
create_app(Settings(_env_file=None, data_dir={str(tmp_path)!r}))
with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
    rig = rig_json(f.read(), 320)
assert rig is not None and rig["faces"], "no rig was built"
heavy = ("models.portrait.animator", "models.portrait.warp", "models.render")
loaded = sorted(m for m in heavy if m in sys.modules)
print("LOADED", loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout


def test_the_browser_takes_every_shared_number_from_the_rig() -> None:
    """static/js/rig.js holds none of the numbers it shares with the server as a literal, nor a list of the
    channels: each comes in the rig's JSON, so the two cannot drift apart."""
    import re

    import numpy as np

    from models.portrait.mesh import MeshRig

    no = np.zeros
    empty = MeshRig(2, 2, no((0, 2)), no((0, 3), int), [], no(0), no((0, 0, 2)), [])
    sent = empty.to_json()  # what the photo check answers, less the photo's own mesh
    source = (ROOT / "static" / "js" / "rig.js").read_text()
    code = re.sub(r"//[^\n]*", "", source)  # comments may name them
    literals = {float(m) for m in re.findall(r"(?<![\w.])(\d+\.\d*|\.\d+|\d+)(?![\w.])", code)}
    shared = {name: float(value) for name, value in sent["constants"].items()}
    assert not {name for name, value in shared.items() if value in literals}, literals
    assert len(shared) == 8 and 25.0 in shared.values() and 0.98 in shared.values()
    strings = set(re.findall(r"[\"'`](\w+)[\"'`]", code))
    assert len(sent["channels"]) == 9 and not strings & set(sent["channels"]), strings


def test_bench_never_imports_the_tests() -> None:
    """Tests may use bench/'s rehearsal tools (bench/tiny_pipelines.py); bench/ stands without tests/."""
    for path in sorted((ROOT / "bench").glob("*.py")):
        assert not _imports_of(ast.parse(path.read_text()), "tests"), f"{path.name} imports from tests/"
