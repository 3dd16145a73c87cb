import json

import nbformat

from course_utils import run_course


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
