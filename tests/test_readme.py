"""The README a newcomer reads: its tables agree with the records they come from, and what it names exists."""

import re
import tomllib
from pathlib import Path

import pytest

from course_utils import pretrained, readme_tables

ROOT = Path(__file__).resolve().parents[1]
READMES = list(readme_tables.READMES)


def test_every_generated_table_agrees_with_its_records():
    assert readme_tables.stale() == [], "run: .venv/bin/python -m course_utils.readme_tables"


@pytest.mark.parametrize("name", READMES)
def test_each_readme_holds_every_table(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert sorted(m.group(2) for m in readme_tables.BLOCK.finditer(text)) == sorted(set(readme_tables.TABLES)
                                                                                     - {"results"})


def test_teaching_quotes_the_readme_s_generated_times():
    for name in ("TEACHING.md", "TEACHING.zh-CN.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert [m.group(2) for m in readme_tables.BLOCK.finditer(text)] == ["timings"], name


def test_chapter_results_lists_every_recorded_reference(tmp_path, monkeypatch):
    """docs/chapter-results.md is the table of references.json: one row per key, its value and date."""
    import json

    from course_utils import references

    text = (ROOT / "docs" / "chapter-results.md").read_text(encoding="utf-8")
    assert [m.group(2) for m in readme_tables.BLOCK.finditer(text)] == ["results"]
    recorded = json.loads(references.FILE.read_text(encoding="utf-8"))
    for entries in recorded.values():
        for key, entry in entries.items():
            chapter, _, what = key.partition(": ")
            assert f"| {chapter} | {what} |" in text and f"({entry['date']})" in text, key
    fake = tmp_path / "references.json"
    fake.write_text(json.dumps({"cpu": {"ch9: a new measure": {"value": 1.5, "spread": 0.25, "date": "2027-01-01"}}}))
    monkeypatch.setattr(references, "FILE", fake)
    assert readme_tables.results_table()[2] == "| ch9 | a new measure | 1.5 ± 0.25 (2027-01-01) |"


def test_a_changed_record_makes_the_table_stale(tmp_path, monkeypatch):
    for name in readme_tables.FILES:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    assert readme_tables.stale(tmp_path) == []
    real = readme_tables.timing_records

    def slower():
        records = real()
        first = next(iter(records["small"]))
        records["small"][first] = {**records["small"][first], "seconds": records["small"][first]["seconds"] + 60}
        return records

    monkeypatch.setattr(readme_tables, "timing_records", slower)
    with_times = [name for name in readme_tables.FILES if "<!-- generated: timings" in (ROOT / name).read_text()]
    assert len(with_times) == 4 and readme_tables.stale(tmp_path) == [f"{name}: timings" for name in with_times]


def test_the_tables_name_every_shipped_model_and_every_notebook():
    models = "\n".join(readme_tables.models_table())
    assert all(f"[`{name}`]" in models for name in pretrained.NAMES)
    timings = "\n".join(readme_tables.timings_table())
    assert all(f"| {p.stem} |" in timings for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("name", READMES)
def test_every_relative_link_resolves(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"{name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("name", READMES)
def test_every_make_target_named_exists(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make (?:\w+=\S+ )*([\w-]+)", text))  # make PYTHON=... test: the target
    assert named and named <= targets, f"{name} names make targets the Makefile lacks: {named - targets}"


@pytest.mark.parametrize("name", READMES)
def test_the_layout_names_every_module_and_benchmark(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    layout = text[text.index("<!-- layout -->"):text.index("<!-- end layout -->")]
    modules = [p.stem for p in (ROOT / "course_utils").glob("*.py") if p.stem not in ("__init__", "__main__")]
    modules += [p.name for p in (ROOT / "course_utils").iterdir() if (p / "__init__.py").is_file()]
    missing = [m for m in modules if f"`{m}`" not in layout]
    missing += [p.name for p in (ROOT / "benchmarks").glob("*.py") if f"`{p.name}`" not in layout]
    assert not missing, f"{name}'s layout does not name: {missing}"


def test_the_python_version_is_the_same_everywhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert "(3, 11)" in (ROOT / "Makefile").read_text()
    for name in READMES:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "Python 3.11" in text and "3.10" not in text, name


def test_the_two_readmes_have_the_same_sections():
    english, chinese = ((ROOT / n).read_text(encoding="utf-8") for n in READMES)
    assert len(re.findall(r"^## ", english, re.M)) == len(re.findall(r"^## ", chinese, re.M))
