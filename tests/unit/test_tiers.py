"""The test tiers enforce themselves (tests/conftest.py): a copy of the real conftest and pyproject runs
on small made-up test trees in a pytest subprocess (collection only, except for the Ray guard)."""

from __future__ import annotations

import shutil

import pytest
from helpers import REPO, TESTS

pytest_plugins = ["pytester"]

RAY_FIXTURE_USERS = """
import pytest

@pytest.fixture
def reference(ray_local):
    return 1

def test_direct(ray_local):
    pass

def test_through_a_fixture(reference):
    pass

def test_head(ray_head):
    pass

def test_plain():
    pass
"""


@pytest.fixture
def tree(pytester: pytest.Pytester):
    """An empty project with this repository's tests/conftest.py and pyproject.toml (markers, options)."""
    shutil.copy(REPO / "pyproject.toml", pytester.path / "pyproject.toml")
    (pytester.path / "tests").mkdir()
    shutil.copy(TESTS / "conftest.py", pytester.path / "tests" / "conftest.py")

    def add(path: str, text: str) -> None:
        target = pytester.path / "tests" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    return add


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.mark.parametrize(
    "tier, refused",
    [
        ("unit", ["test_direct", "test_through_a_fixture", "test_head"]),
        ("gpu", ["test_direct", "test_through_a_fixture", "test_head"]),
        ("ray", ["test_head"]),
        ("e2e", []),
    ],
    ids=["unit", "gpu", "ray", "e2e"],
)
def test_ray_fixtures_only_in_their_tiers(pytester, tree, tier, refused):
    tree(f"{tier}/test_uses_ray.py", RAY_FIXTURE_USERS)
    result = _run(pytester, "--collect-only", "-q")
    if not refused:
        assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
        return
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "tests in the wrong tier" in err
    for name in refused:  # every offender is named, with the rule it breaks
        assert f"tests/{tier}/test_uses_ray.py::{name}: uses the " in err
    assert "::test_plain" not in err
    assert "test_head: uses the ray_head fixture, which only tests/e2e/ may use" in err
    if "test_direct" in refused:
        assert "test_direct: uses the ray_local fixture, which only tests/ray/ and tests/e2e/ may use" in err


def test_a_test_file_outside_the_tier_folders_is_refused(pytester, tree):
    tree("test_top.py", "def test_x():\n    pass\n")
    result = _run(pytester, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "tests/test_top.py::test_x: test files live in tests/{e2e,gpu,ray,unit}/" in result.stderr.str()


def test_tier_markers_come_from_the_folder_and_tiers_run_in_order(pytester, tree):
    for tier in ("e2e", "ray", "gpu", "unit"):
        tree(f"{tier}/test_{tier}_tier.py", "def test_one():\n    pass\n")
    result = _run(pytester, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    order = [line.split("/")[1] for line in result.stdout.lines if line.startswith("tests/")]
    assert order == ["unit", "gpu", "ray", "e2e"]  # gpu's own Ray before the session's ray_local
    result = _run(pytester, "--collect-only", "-q", "-m", "unit or e2e")
    assert [line for line in result.stdout.lines if line.startswith("tests/")] == [
        "tests/unit/test_unit_tier.py::test_one",
        "tests/e2e/test_e2e_tier.py::test_one",
    ]
    tree("unit/test_typo.py", "import pytest\n\n@pytest.mark.rey\ndef test_x():\n    pass\n")
    result = _run(pytester, "--collect-only", "-q")
    assert result.ret != pytest.ExitCode.OK and "'rey' not found in `markers`" in result.stdout.str()


def test_a_unit_test_that_leaves_ray_running_fails(pytester, tree):
    # A stand-in for the ray package in the child's path only: is_initialized() turns true once a test
    # calls init(), as the real one does; starting a real Ray here would take seconds.
    fake_ray = "_up = False\n\ndef init():\n    global _up\n    _up = True\n\n"
    tree("unit/ray.py", fake_ray + "def is_initialized():\n    return _up\n")
    tree(
        "unit/test_starts_ray.py",
        "import ray\n\ndef test_quiet():\n    pass\n\ndef test_starts():\n    ray.init()\n",
    )
    result = _run(pytester, "-q", "tests/unit")
    result.assert_outcomes(passed=2, errors=1)
    assert "tests/unit/test_starts_ray.py::test_starts started Ray" in result.stdout.str()
