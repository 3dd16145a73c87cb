"""Shared fixtures: every test gets its own data folder, so tests never touch a learner's cache."""

import pytest

# tests/browser needs Chromium and a JupyterLab server: `make test-browser` runs it by name, `make test` leaves it out.
collect_ignore = ["browser"]


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "course-data"))
