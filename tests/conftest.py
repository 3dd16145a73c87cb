"""Shared fixtures: no test touches the learner's cache (``~/.cache/diffusion-course``).

At import, before any fixture runs, ``COURSE_DATA_DIR`` points at a folder made for this test session: module- and
session-scoped fixtures (and the notebooks' kernels, which inherit the environment) write there, so scorers are
trained once per session. pytest-xdist's workers inherit it from the controller, which deletes it at the end.
Each test then gets a data folder of its own (``_own_data_dir``).
"""

import os
import shutil
import tempfile

import pytest

_SESSION_MARK = "COURSE_TESTS_SESSION_DATA_DIR"  # set by the process that made the folder, read by its workers
if _SESSION_MARK not in os.environ:
    os.environ[_SESSION_MARK] = tempfile.mkdtemp(prefix="course-tests-")
    _MADE_HERE = True
else:
    _MADE_HERE = False
os.environ["COURSE_DATA_DIR"] = os.environ[_SESSION_MARK]

# tests/browser needs Chromium and a JupyterLab server: `make test-browser` runs it by name, `make test` leaves it out;
# tests/site needs Chromium and a built site: `make test-site` runs it.
collect_ignore = ["browser", "site"]


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow tests (make test-wheelhouse does)")


def pytest_unconfigure(config):
    if _MADE_HERE:
        shutil.rmtree(os.environ.pop(_SESSION_MARK), ignore_errors=True)


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


@pytest.fixture
def seeded_unet():
    """A maker: ``seeded_unet(**kwargs)`` is an 8x8 one-channel ``make_unet`` U-Net, the same weights every call."""
    import torch

    from course_utils.diffusion import make_unet

    def make(**kwargs):
        torch.manual_seed(0)
        return make_unet(8, channels=(8, 16), layers_per_block=1, attention=1, in_channels=1, **kwargs)

    return make
