import json

import nbformat
import pytest

from course_tools import run_course
from course_utils import references


@pytest.fixture(autouse=True)
def _keep_the_environment(monkeypatch):
    """run_course.main sets COURSE_PROFILE (and, with --record, COURSE_RECORD_REFERENCES) in its own process; here
    that process is the test worker, whose later notebooks would otherwise record into the course's
    references.json. monkeypatch puts both back as they were after each test."""
    monkeypatch.delenv(references.RECORD, raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "small")


def test_runner_writes_notebook_html_and_timings(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import os\nprint('profile', os.environ['COURSE_PROFILE'])"),
        ]
    )
    src = tmp_path / "01_demo.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "build"
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert run_course.main([str(src), "--profile", "small", "--out", str(out)]) == 0
    executed = nbformat.read(out / "01_demo.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "profile small"
    assert "profile small" in (out / "01_demo.html").read_text()
    record = json.loads((out / "timings-small.json").read_text())
    assert record["profile"] == "small" and record["results"][0]["error"] is None
    assert not list(out.glob("*.tmp"))


def test_runner_reports_a_failing_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert 1 == 2, 'broken fact'")])
    src = tmp_path / "02_bad.ipynb"
    nbformat.write(nb, src)
    assert run_course.main([str(src), "--profile", "small", "--out", str(tmp_path / "b")]) == 1
    record = json.loads((tmp_path / "b" / "timings-small.json").read_text())
    assert "broken fact" in record["results"][0]["error"]


def test_record_updates_the_notebooks_that_ran_cleanly_and_keeps_the_others(tmp_path):
    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), good)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert False")]), bad)
    results = tmp_path / "results"
    results.mkdir()
    kept = {"seconds": 9, "date": "2026-11-21", "device": "cpu", "machine": "m", "load": None, "source": "earlier"}
    (results / "timings-small.json").write_text(json.dumps(
        {"profile": "small", "notebooks": {"00_old.ipynb": kept, "02_bad.ipynb": kept}}))
    assert run_course.main([str(good), str(bad), "--profile", "small", "--out", str(tmp_path / "b"),
                            "--record", str(results)]) == 1
    record = json.loads((results / "timings-small.json").read_text())["notebooks"]
    assert record["00_old.ipynb"] == kept and record["02_bad.ipynb"] == kept  # a failed run changes nothing
    new = record["01_good.ipynb"]
    assert new["seconds"] > 0 and new["source"] == "course_tools.run_course --record" and len(new["load"]) == 2
    assert "cores" in new["machine"] and new["device"] == "cpu"


def test_record_must_be_a_folder(tmp_path, capsys):
    src = tmp_path / "01_demo.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), src)
    assert run_course.main([str(src), "--out", str(tmp_path / "b"), "--record", str(tmp_path / "nope")]) == 2
    assert "--record" in capsys.readouterr().err and not (tmp_path / "b").exists()
