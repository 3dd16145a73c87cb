"""Every chapter's setup cell: one cell, the same in every notebook, that installs the course wherever it cannot be
imported (Kaggle, ModelScope, a plain Jupyter, Colab) and nothing where it can.

The cell is run as a learner's kernel runs it, in a Python where the course's requirements are importable but
``course_utils`` is not (a fresh virtual environment that sees this one's site-packages through a ``.pth`` file, not
its editable install), outside Colab. ``COURSE_SOURCE`` points it at a copy of this checkout instead of GitHub, and
pip is told to use no index, so the test needs no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    (ROOT / "notebooks" / "zh").glob("[0-9][0-9]_*.ipynb"))


def setup_cell(path: Path) -> str:
    """The source of the notebook's first code cell (the setup cell)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


SETUP = setup_cell(NOTEBOOKS[0])
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def test_every_notebook_has_the_same_setup_cell_first():
    different = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if setup_cell(p) != SETUP]
    assert not different, f"the first code cell of {different} differs from {NOTEBOOKS[0].name}'s setup cell"
    assert "%" not in SETUP and "google.colab" not in SETUP, "plain Python, for every platform, not only Colab"


def run_cell(python: Path | str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the setup cell in ``python`` (a kernel without IPython magics needs none: the cell is plain Python)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "COURSE_SOURCE"))}
    environment.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **env)
    return subprocess.run([str(python), "-c", SETUP], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def bare_python(tmp_path: Path) -> Path:
    """A Python that imports torch, diffusers, pip... (this environment's site-packages) but not course_utils."""
    venv = tmp_path / "kernel"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # a path line in a .pth file adds that folder, but the .pth files inside it (the editable install) are not run
    Path(site, "course-requirements.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(python), "-c", "from importlib.util import find_spec as f; "  # found, not imported:
                            "assert f('diffusers') and f('pip'), 'no diffusers or pip'; import course_utils"],  # fast
                           cwd=tmp_path, capture_output=True, text=True)
    assert "No module named 'course_utils'" in probe.stderr, probe.stderr
    return python


def test_setup_cell_installs_the_course_where_it_cannot_be_imported(bare_python: Path, tmp_path: Path):
    source = tmp_path / "course"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "course_utils", source / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # build with this environment's setuptools (no index to fetch an isolated one from)
    done = run_cell(bare_python, tmp_path, COURSE_SOURCE=str(source), PIP_NO_BUILD_ISOLATION="0")
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.strip() == f"Installed the course and its requirements from {source}", done.stdout
    where = subprocess.run([str(bare_python), "-c", "import course_utils; print(course_utils.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert Path(where).is_relative_to(bare_python.parents[1]), f"installed into the kernel's environment: {where}"
    again = run_cell(bare_python, tmp_path, COURSE_SOURCE=str(tmp_path / "nowhere"))
    assert again.returncode == 0 and again.stdout == "" and again.stderr == "", "installed once, not again"


def test_setup_cell_installs_nothing_where_the_course_imports(tmp_path: Path):
    done = run_cell(sys.executable, tmp_path, COURSE_SOURCE=str(tmp_path / "nowhere"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), "not a line, not a pip call"


def test_a_failed_install_says_in_one_line_how_to_install_by_hand(bare_python: Path, tmp_path: Path):
    missing = tmp_path / "no-such-folder"
    done = run_cell(bare_python, tmp_path, COURSE_SOURCE=str(missing))
    assert done.returncode == 0 and not done.stderr, "no traceback: the notebook still runs its next cells"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"Could not install the course from {missing}") and "README" in lines[0], lines[0]


def test_every_notebook_opens_in_kaggle_beside_colab():
    for path in NOTEBOOKS:
        first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        rel = path.relative_to(ROOT).as_posix()
        kaggle = f"https://kaggle.com/kernels/welcome?src={REPOSITORY}/blob/main/{rel}"
        assert f"]({kaggle})" in first, f"{rel}: no Open-in-Kaggle badge for this notebook in its first cell"
