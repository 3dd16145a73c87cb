"""The README a newcomer reads and the reference pages in docs/: their generated tables agree with the records they
come from, each table lives where it belongs, what they name exists, and they read as reference, not as a diary."""

import re
import tomllib
from pathlib import Path

import pytest

from course_tools import readme_tables
from course_utils import pretrained

ROOT = Path(__file__).resolve().parents[1]
READMES = list(readme_tables.READMES)
# every Markdown page a learner or instructor reads: the READMEs, TEACHING, benchmarks/README and docs/
PAGES = READMES + ["TEACHING.md", "TEACHING.zh-CN.md", "benchmarks/README.md"] + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")


def test_every_generated_table_agrees_with_its_records():
    assert readme_tables.stale() == [], "run: .venv/bin/python -m course_tools.readme_tables"


@pytest.mark.parametrize("name", PAGES)
def test_each_page_holds_the_tables_it_should(name):
    """models in docs/pretrained.md, timings in docs/measurements.md and TEACHING, benchmarks in
    docs/measurements.md and benchmarks/README.md, results in docs/chapter-results.md; no other page has one."""
    text = (ROOT / name).read_text(encoding="utf-8")
    assert [m.group(2) for m in readme_tables.BLOCK.finditer(text)] == readme_tables.HOMES.get(name, [])


def test_every_table_has_a_home_in_both_languages():
    homes = {table: [name for name, tables in readme_tables.HOMES.items() if table in tables]
             for table in readme_tables.TABLES}
    assert all(homes.values()), homes
    for table in ("models", "timings", "benchmarks"):
        assert {readme_tables.FILES[name] for name in homes[table]} == {"en", "zh"}, table


def test_few_dated_lines_outside_generated_tables():
    """Reference, not a diary: a date stays only where a figure needs it; the generated tables carry the rest."""
    dated = []
    for name in PAGES:
        text = readme_tables.BLOCK.sub("", (ROOT / name).read_text(encoding="utf-8"))
        dated += [f"{name}: {line.strip()[:80]}" for line in text.splitlines() if DATE.search(line)]
    assert len(dated) <= 12, "\n".join(dated)
    assert not any(DATE.search(line) for name in READMES for line in (ROOT / name).read_text().splitlines())


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
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
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


def _anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("name", PAGES)
def test_every_relative_link_resolves(name):
    """A link (relative to the page) names a file that exists, and a #anchor into a Markdown page a heading of it."""
    page = ROOT / name
    text = page.read_text(encoding="utf-8")
    missing = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target:
            continue
        file = (page.parent / target) if target else page
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
            missing.append(f"{target}#{anchor}")
    assert not missing, f"{name} links to files or headings that do not exist: {missing}"


@pytest.mark.parametrize("name", PAGES)
def test_every_make_target_named_exists(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make (?:\w+=\S+ )*([\w-]+)", text))  # make PYTHON=... test: the target
    assert named <= targets, f"{name} names make targets the Makefile lacks: {named - targets}"
    assert named or name not in READMES, f"{name} names no make target"


def test_the_layout_names_every_module_and_benchmark():
    text = (ROOT / "docs" / "contributing.md").read_text(encoding="utf-8")
    layout = text[text.index("<!-- layout -->"):text.index("<!-- end layout -->")]
    modules = [p.stem for package in ("course_utils", "course_tools") for p in (ROOT / package).rglob("*.py")
               if p.stem not in ("__init__", "__main__") and "exercises" not in p.parts]
    modules += [p.name for package in ("course_utils", "course_tools") for p in (ROOT / package).iterdir()
                if (p / "__init__.py").is_file()]
    missing = [m for m in modules if f"`{m}`" not in layout]
    missing += [p.name for p in (ROOT / "benchmarks").glob("*.py") if f"`{p.name}`" not in layout]
    assert not missing, f"docs/contributing.md's layout does not name: {missing}"


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


@pytest.mark.parametrize("name", READMES)
def test_the_readme_is_a_front_door(name):
    """At most 250 lines; the reference lives in docs/, and each page a learner needs has a Chinese version."""
    text = (ROOT / name).read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    pages = ("install", "offline-and-mirrors", "train-your-own", "pretrained", "measurements")
    folder = "docs/zh/" if name.endswith("zh-CN.md") else "docs/"
    assert all(f"]({folder}{page}.md" in text for page in pages) and "](docs/glossary.md)" in text


def test_chinese_pages_match_english_ones():
    english = {p.name for p in (ROOT / "docs").glob("*.md")}
    chinese = {p.name for p in (ROOT / "docs" / "zh").glob("*.md")}
    assert chinese <= english and {"install.md", "offline-and-mirrors.md"} <= chinese
