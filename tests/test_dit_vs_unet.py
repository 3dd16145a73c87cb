"""benchmarks/dit_vs_unet.py end to end on a tiny budget: both models train, sample through the checked guided
Euler sampler, get scored and timed, and the record and pictures are written; bad flags are refused together."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dit_vs_unet  # noqa: E402


def test_a_smoke_run_writes_both_models_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(dit_vs_unet, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(dit_vs_unet, "PICTURES", tmp_path / "pictures")
    # the digit classifier from the session's cache (tests/conftest.py), trained once for every test and notebook
    monkeypatch.setenv("COURSE_DATA_DIR", os.environ["COURSE_TESTS_SESSION_DATA_DIR"])
    result = dit_vs_unet.main(["--minutes", "0.02", "--n", "20", "--batch", "8", "--steps", "2", "--sizes", "28",
                               "--patches", "4", "--speed_steps", "1", "--tag", "smoke"])
    record = json.loads(next((tmp_path / "results").glob("dit_vs_unet-smoke-*.json")).read_text())
    assert set(record["models"]) == set(record["rows"]) == {"dit", "unet"}
    dit, unet = record["models"]["dit"]["parameters"], record["models"]["unet"]["parameters"]
    assert abs(dit / unet - 1) < 0.1, f"the two models are of about the same size: {dit} vs {unet} parameters"
    for key, run in record["models"].items():
        assert run["steps"] >= 1 and run["images_per_s"] > 0 and run["loss_curve"], key
        assert set(record["rows"][key]) == {"1.0", "2.0"}, key
        assert {"frechet", "frechet_spread", "confident", "classes", "as_asked"} <= set(record["rows"][key]["1.0"])
    assert record["checks"]["sampler_max_abs_diff"] <= record["checks"]["sampler_tolerance"]
    assert [s["name"] for s in record["speed"]] == ["DiT patch 4, 28 px", "U-Net, 28 px"]
    assert record["speed"][0]["tokens"] == 49
    assert {p.name for p in (tmp_path / "pictures").iterdir()} == {
        "loss.png", "samples-dit.png", "samples-unet.png", "speed.png"}
    assert result["rows"]["dit"]["1.0"]["frechet"] == record["rows"]["dit"]["1.0"]["frechet"]


def test_bad_flags_are_refused_together(capsys):
    with pytest.raises(SystemExit) as stop:
        dit_vs_unet.main(["--minutes", "0", "--sizes", "30", "--guidance", "-1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--minutes 0" in err and "--sizes 30" in err and "--guidance -1" in err, err
