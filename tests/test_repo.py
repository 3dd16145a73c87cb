"""The promises the repository makes: clean notebooks that open and close the same way, lint, CI wiring."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
TWINS = sorted((ROOT / "notebooks" / "zh").glob("[0-9]*.ipynb"))  # the Chinese edition (tests/test_editions.py)
# The lecture's fixed headings in each edition: title, "what you will learn", summary, exercises.
HEADINGS = {
    "en": ("# Chapter", "What you will learn", "## Summary", "## Exercises"),
    "zh": ("# 第", "你将学到", "## 小结", "## 练习"),
}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS + TWINS, ids=lambda p: p.relative_to(ROOT / "notebooks").as_posix())
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [
        i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS + TWINS, ids=lambda p: p.relative_to(ROOT / "notebooks").as_posix())
def test_notebook_opens_and_closes_like_a_lecture(path):
    cells = json.loads(path.read_text())["cells"]
    title, learn, summary, exercises = HEADINGS["zh" if path.parent.name == "zh" else "en"]
    first = "".join(cells[0]["source"])
    assert first.startswith(title), "first cell: the title"
    assert learn in first
    assert "colab.research.google.com/github/" in first and path.name in first, "Open-in-Colab badge for this file"
    headings = [(i, line) for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    at = {line.strip(): i for i, line in headings}
    assert summary in at and exercises in at, f"a {summary!r} and an {exercises!r} section"
    assert at[summary] <= at[exercises] == max(i for i, _ in headings), "the summary, then the exercises, last"
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert 'find_spec("course_utils")' in code[0], "a setup cell first: installs the course where it is missing"
    assert any("chapter_config(" in c for c in code), "a config cell reading the active profile"
    helpers = re.compile(r"^def (show_images|make_grid)\b", re.M)
    assert not any(helpers.search(c) for c in code), "shared helpers are imported, never re-typed"


def test_no_notebook_prints_a_token():
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            # a secret is a token / HF_TOKEN / hf_token, not a tokenizer or the text's tokens
            assert not re.search(r"print\([^)]*\b(token|hf_token)\b", src, re.I), f"{path.name} may print a token"


def test_ruff_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "course_utils", "course_tools", "tests", "notebooks", "images",
         "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_requirements_are_pinned():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    loose = [line for line in lines if line and "==" not in line]
    assert not loose, f"unpinned requirements: {loose}"


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make course" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_every_diagram_is_embedded_in_the_notebooks_that_show_it(capsys):
    spec = importlib.util.spec_from_file_location("embed", ROOT / "images" / "embed.py")
    embed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embed)  # in this process: no new one to import torch and nbformat into
    assert embed.main(["--check"]) == 0, "run python images/embed.py:\n" + capsys.readouterr().out

