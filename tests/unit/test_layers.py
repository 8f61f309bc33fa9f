"""The import direction ``jobs → actors/training → pipeline → io/tracking → models → core``.

Every import of every module is read with ``ast`` (imports inside functions too), like Ray's own
circular-import lint test: a module may import its own layer or a lower one, never a higher one; no
job imports another job (only ``demo``, which composes them, and the shared ``jobs/_*`` helpers);
only ``jobs/`` and ``actors/`` import Ray (``training/`` only ``ray.train``/``ray.tune``); ``core/``
and ``models/`` import no video, image or file-format library.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "laps_ray"
RANK = {"core": 1, "models": 2, "io": 3, "tracking": 3, "pipeline": 4, "actors": 5, "training": 5, "jobs": 6}
SHARED = {"laps_ray", "laps_ray.config"}  # importable from every layer
PURE_FORBIDDEN = ("ray", "av", "cv2", "h5py", "matplotlib")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement of a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            # `from laps_ray.jobs import calibrate` imports the module laps_ray.jobs.calibrate
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "laps_ray" and parts[1] in RANK else None


def test_imports_only_go_down():
    modules = _modules()
    problems = []
    for name, path in modules.items():
        own = _layer(name)
        for target, line in _imports(path):
            if not target.startswith("laps_ray") or target in SHARED or target not in modules:
                continue  # not ours, or `from laps_ray.x import some_name` (its module is checked)
            theirs = _layer(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if own is None:
                continue  # laps_ray/cli.py: the console script dispatches to jobs
            if theirs is None:
                problems.append(where + " (not a layer module)")
            elif RANK[theirs] > RANK[own]:
                problems.append(where + f" ({own} may not import {theirs})")
            elif own == theirs == "jobs":
                importer, imported = name.split(".")[-1], (target.split(".") + [""])[2]
                if imported and not imported.startswith("_") and importer not in ("demo", imported):
                    problems.append(where + " (a job imports another job)")
    assert not problems, "\n".join(problems)


def test_ray_only_where_it_belongs_and_pure_layers_stay_pure():
    problems = []
    for name, path in _modules().items():
        layer = _layer(name)
        for target, line in _imports(path):
            root = target.split(".")[0]
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if root == "ray" and layer not in ("jobs", "actors", "training"):
                problems.append(where + " (Ray only in jobs/ and actors/)")
            if root == "ray" and layer == "training" and not target.startswith(("ray.train", "ray.tune")):
                problems.append(where + " (training/ may use ray.train and ray.tune only)")
            if layer in ("core", "models") and root in PURE_FORBIDDEN:
                problems.append(where + f" ({layer}/ is pure numpy/torch)")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_violations(tmp_path):
    """The checker itself can fail: an upward import and a job importing a job are both caught."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from laps_ray.jobs import segment_folder\n    import ray\n")
    found = _imports(bad)
    assert ("laps_ray.jobs.segment_folder", 2) in found and ("ray", 3) in found
    assert _layer("laps_ray.pipeline.resolve") == "pipeline" and _layer("laps_ray.config") is None
