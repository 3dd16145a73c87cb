"""The learner's number beside the course's: printed from references.json, written only by a recording run."""

import json

from course_utils import references


def test_compare_prints_the_learners_value_beside_the_recorded_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(references, "FILE", tmp_path / "references.json")
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    monkeypatch.delenv(references.RECORD, raising=False)
    assert references.compare("ch3 loss", 0.0712) is None, "a cell ending with compare echoes nothing"
    assert capsys.readouterr().out == "ch3 loss: yours 0.0712\n", "no reference for this profile: yours alone"
    assert not (tmp_path / "references.json").exists(), "only a recording run writes references"
    monkeypatch.setenv(references.RECORD, "1")
    references.compare("ch3 loss", 0.069, spread=0.004)
    monkeypatch.delenv(references.RECORD)
    capsys.readouterr()
    references.compare("ch3 loss", 0.08)
    line = capsys.readouterr().out.strip()
    assert "yours 0.08" in line and "the course's cpu run: 0.069 ± 0.004" in line
    assert line.endswith("0.069 ± 0.004"), "a lesson's output carries no date (the record in references.json does)"
    table = json.loads((tmp_path / "references.json").read_text())
    assert table["cpu"]["ch3 loss"]["value"] == 0.069 and "small" not in table
