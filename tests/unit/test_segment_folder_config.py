"""segment_folder's checks before any work (no Ray): threshold errors, report and best.yaml thresholds,
the CLI's help."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import job_help, segment_folder_cfg

from laps_ray.config import load_config, to_dict
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.jobs.segment_folder import SegmentJobConfig, main


def test_threshold_errors_stop_before_any_work(segment_inputs, tmp_path, capsys):
    report = tmp_path / "calib.json"
    report.write_text(json.dumps({"motion": {"smoothed": {"best_f1": {"thr": 0.7}, "best_j": {"thr": 0.5}}}}))
    out = tmp_path / "o"
    base = [
        "--input",
        str(segment_inputs["good"]),
        "--checkpoint",
        str(segment_inputs["tok"]),
        "--output",
        str(out),
    ]

    def fails(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main([*base, *argv])
        return exc.value.code, capsys.readouterr().err.strip()

    code, err = fails("--report", str(report), "--report-key", "motion.raw.best_f1.thr")
    assert code == 1 and len(err.splitlines()) == 1
    assert "motion.raw.best_f1.thr" in err and "available:" in err
    assert "motion.smoothed.best_f1.thr" in err and "motion.smoothed.best_j.thr" in err
    assert not out.exists()  # nothing was done
    # no threshold at all: calibrated in the run (`auto`); a report wins over `auto`, a number over nothing
    from laps_ray.pipeline.resolve import resolve_threshold

    auto = segment_folder_cfg(segment_inputs, segment_inputs["good"], out, "segmentation.threshold=auto")
    assert resolve_threshold(auto) == ("auto", {"source": "auto"})
    assert resolve_threshold(auto, str(report), "motion.smoothed.best_j.thr")[0] == 0.5
    fixed = segment_folder_cfg(segment_inputs, segment_inputs["good"], out, "segmentation.threshold=0.3")
    assert resolve_threshold(fixed) == (0.3, {"source": "fixed"})
    code, err = fails(
        "--report", str(report), "--report-key", "motion.smoothed.best_j.thr", "segmentation.threshold=0.3"
    )  # both: ambiguous
    assert code == 2 and "use one" in err
    code, err = fails("--report", str(report), "--report-key", "velocity.raw.best_f1.thr")
    assert code == 2 and "energy.source" in err  # a velocity threshold for a motion energy
    assert not out.exists()
    code, err = fails("--clusters", str(tmp_path / "no_cluster_run"))  # a cluster model that is not there
    assert code == 1 and "no_cluster_run" in err and "cluster model" in err
    assert not out.exists()


def test_report_threshold_and_sweep_best_yaml_are_accepted(segment_inputs, tmp_path):
    report = tmp_path / "calib.json"
    report.write_text(json.dumps({"motion": {"smoothed": {"best_f1": {"thr": 0.7}}}}))
    from laps_ray.pipeline.resolve import resolve_checkpoint, resolve_threshold

    key = "report_key=motion.smoothed.best_f1.thr"
    cfg = segment_folder_cfg(
        segment_inputs,
        segment_inputs["good"],
        tmp_path / "o",
        "segmentation.threshold=null",
        f"report={report}",
        key,
    )
    thr, source = resolve_threshold(cfg, cfg.report, cfg.report_key)
    assert thr == 0.7 and source == {
        "source": "report",
        "report": str(report),
        "key": "motion.smoothed.best_f1.thr",
    }
    # sweep_thresholds writes best.yaml with top-level energy: and segmentation: (their field names)
    best = tmp_path / "best.yaml"
    doc = {
        "energy": {
            "source": "velocity",
            "mode": "token_diff_l2_mean",
            "smoothing": to_dict(SmoothingConfig(alpha=0.4)),
        },
        "segmentation": to_dict(SegmentationConfig(threshold=0.0123, up_count=3)),
    }
    best.write_text(yaml.safe_dump(doc))
    cfg = load_config(SegmentJobConfig, best, [f"input={segment_inputs['good']}", "output=o"])
    assert cfg.energy.source == "velocity" and cfg.energy.smoothing.alpha == 0.4
    assert cfg.segmentation.threshold == 0.0123 and cfg.segmentation.up_count == 3
    # a checkpoint that is not there is named in the error
    missing = load_config(SegmentJobConfig, None, [f"tokenizer.checkpoint={tmp_path / 'nope'}"])
    with pytest.raises(Exception, match="nope"):
        resolve_checkpoint(missing.tokenizer)


def test_module_help_is_fast_and_lists_flags():
    out = job_help("segment_folder")
    for flag in ("--report-key", "--checkpoint", "--shard-seconds", "--num-actors", "--strict"):
        assert flag in out
