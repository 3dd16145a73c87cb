"""The learner's number beside the course's: printed from references.json, written only by a recording run."""

import json

from course_utils import references


def test_compare_prints_the_learners_value_beside_the_recorded_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(references, "FILE", tmp_path / "references.json")
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    monkeypatch.delenv(references.RECORD, raising=False)
    line = references.compare("ch3 loss", 0.0712)
    assert "yours 0.0712" in line and "no cpu reference yet" in line
    assert not (tmp_path / "references.json").exists(), "only a recording run writes references"
    monkeypatch.setenv(references.RECORD, "1")
    references.compare("ch3 loss", 0.069, spread=0.004)
    monkeypatch.delenv(references.RECORD)
    line = references.compare("ch3 loss", 0.08)
    assert "yours 0.08" in line and "the course's cpu run: 0.069 ± 0.004" in line and line in capsys.readouterr().out
    assert line.endswith("0.069 ± 0.004"), "a lesson's output carries no date (the record in references.json does)"
    table = json.loads((tmp_path / "references.json").read_text())
    assert table["cpu"]["ch3 loss"]["value"] == 0.069 and "small" not in table
