"""Shared fixtures: every test gets its own data folder, so tests never touch a learner's cache."""

import pytest


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "course-data"))
