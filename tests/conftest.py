"""Shared fixtures: every test gets its own data folder, so tests never touch a learner's cache."""

import pytest

# tests/browser needs Chromium and a JupyterLab server: `make test-browser` runs it by name, `make test` leaves it out.
collect_ignore = ["browser"]


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow tests (make test-wheelhouse does)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: make test-wheelhouse runs it (pytest --slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "course-data"))
    # a mirror set in the shell is not the tests' business: the tests that need one set it (tests/hub_server.py)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("COURSE_MNIST_MIRROR", raising=False)


@pytest.fixture
def butterfly_folder(tmp_path):
    """A maker: ``butterfly_folder(n, size)`` writes n synthetic butterflies as PNGs to tmp_path/images."""
    from course_utils.data import synthetic_butterfly

    def make(n: int, size: int):
        folder = tmp_path / "images"
        folder.mkdir()
        for i in range(n):
            synthetic_butterfly(i, size=size).save(folder / f"b{i:02d}.png")
        return folder

    return make
