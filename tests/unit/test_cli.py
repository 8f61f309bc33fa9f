import importlib

import pytest

from laps_ray.cli import JOBS, main


def test_laps_help_lists_every_job(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in JOBS)


def test_unknown_job_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segmnet_folder"])
    assert exc.value.code == 2 and "unknown job 'segmnet_folder'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_listed_job_is_a_module_with_main(name):
    module = importlib.import_module(f"laps_ray.jobs.{name}")
    assert callable(module.main) and module.__doc__ and "python -m laps_ray.jobs." in module.__doc__
