"""Two editions kept in step (English in notebooks/, Chinese in notebooks/zh/), and Colab badges that work.

A Chinese twin has its English chapter's cells in the same order with the same ids; its code cells are the
English ones byte for byte (``python notebooks/zh/sync.py`` copies them), its markdown cells are Chinese.
Every badge opens the very notebook it sits in (or, in a README, the notebook linked beside it) in the
repository that pyproject.toml's ``[project.urls]`` names, and every install cell installs that repository.
"""

import difflib
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
TWINS = sorted((ROOT / "notebooks" / "zh").glob("[0-9]*.ipynb"))
READMES = {"README.md": CHAPTERS, "README.zh-CN.md": TWINS}
BRANCH = "main"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^\s)]+")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SYNC = "run `python notebooks/zh/sync.py`"


def published_repository() -> str:
    """The published repository's address (https://github.com/OWNER/NAME), from pyproject.toml."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    address = urls["Repository"].rstrip("/").removesuffix(".git")
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", address), f"not a GitHub repository: {address}"
    return address


def cells(path: Path) -> list[dict]:
    """A notebook's cells, as stored."""
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    """A cell's source as one string."""
    return "".join(cell["source"])


def rel(path: Path) -> str:
    """A path relative to the repository root, with forward slashes."""
    return path.relative_to(ROOT).as_posix()


def test_there_are_two_editions():
    assert CHAPTERS and TWINS, "no English chapters or no Chinese twins found"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_has_a_chinese_twin(chapter):
    twin = chapter.parent / "zh" / chapter.name
    assert twin.is_file(), (
        f"{rel(chapter)} has no Chinese twin: {SYNC} to create {rel(twin)} (code cells copied), then translate "
        "its markdown cells, in the same change"
    )


def test_every_twin_has_an_english_chapter():
    orphans = [rel(t) for t in TWINS if not (t.parent.parent / t.name).is_file()]
    assert not orphans, f"Chinese notebooks without an English chapter: {orphans}"


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.name)
def test_twin_has_the_same_cells_and_code(twin):
    chapter = twin.parent.parent / twin.name
    if not chapter.is_file():
        pytest.skip("no English chapter (reported by test_every_twin_has_an_english_chapter)")
    en, zh = json.loads(chapter.read_text(encoding="utf-8")), json.loads(twin.read_text(encoding="utf-8"))
    assert (zh["nbformat"], zh["nbformat_minor"]) == (en["nbformat"], en["nbformat_minor"])
    layout = [(c["cell_type"], c.get("id")) for c in en["cells"]]
    assert [(c["cell_type"], c.get("id")) for c in zh["cells"]] == layout, (
        f"{rel(twin)} does not have {chapter.name}'s cells (types and ids, in order): {SYNC}"
    )
    for e, z in zip(en["cells"], zh["cells"], strict=True):
        if e["cell_type"] != "markdown":
            diff = "\n".join(difflib.unified_diff(text(e).splitlines(), text(z).splitlines(), "en", "zh", lineterm=""))
            assert z == e, f"{rel(twin)} cell {e.get('id')} differs from the English code cell: {SYNC}\n{diff}"


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.name)
def test_twin_markdown_is_chinese(twin):
    english = [c.get("id") for c in cells(twin) if c["cell_type"] == "markdown" and not CHINESE.search(text(c))]
    assert not english, f"{rel(twin)}: markdown cells {english} are not translated yet"


@pytest.mark.parametrize("path", CHAPTERS + TWINS, ids=rel)
def test_notebook_badges_open_this_notebook(path):
    owner_name = published_repository().removeprefix("https://github.com/")
    badges = [m for c in cells(path) if c["cell_type"] == "markdown" for m in BADGE.finditer(text(c))]
    assert badges, f"{rel(path)} has no Open-in-Colab badge"
    expected = f"https://colab.research.google.com/github/{owner_name}/blob/{BRANCH}/{rel(path)}"
    wrong = [m.group(0) for m in badges if m.group(0) != expected]
    assert not wrong, f"{rel(path)}: badges {wrong} should open {expected}"


@pytest.mark.parametrize("path", CHAPTERS + TWINS, ids=rel)
def test_install_cell_installs_the_published_repository(path):
    code = [text(c) for c in cells(path) if c["cell_type"] == "code"]
    installs = re.findall(r"\"git\+([^\s\"'@#]+)\"", "\n".join(code))
    assert installs, f"{rel(path)} has no setup cell that installs the course (git+https://...)"
    wrong = [url for url in installs if url.rstrip("/").removesuffix(".git") != published_repository()]
    assert not wrong, f"{rel(path)} installs {wrong}, not {published_repository()} (pyproject.toml [project.urls])"


@pytest.mark.parametrize("name", READMES)
def test_readme_badges_open_the_notebook_beside_them(name):
    owner_name = published_repository().removeprefix("https://github.com/")
    rows = [line for line in (ROOT / name).read_text(encoding="utf-8").splitlines() if BADGE.search(line)]
    assert rows, f"{name} has no Open-in-Colab badges"
    badged = set()
    for row in rows:
        local = {link for link in LINK.findall(row) if link.endswith(".ipynb") and "://" not in link}
        assert len(local) == 1, f"{name}: a badge row needs exactly one link to its notebook beside it: {row}"
        (notebook,) = local
        assert (ROOT / notebook).is_file(), f"{name} links {notebook}, which does not exist"
        for badge in BADGE.finditer(row):
            expected = f"https://colab.research.google.com/github/{owner_name}/blob/{BRANCH}/{notebook}"
            assert badge.group(0) == expected, f"{name}: the badge beside {notebook} opens {badge.group(0)}"
        badged.add(notebook)
    missing = [rel(p) for p in READMES[name] if rel(p) not in badged]
    assert not missing, f"{name}: no chapter row with a badge for {missing}"


def test_readmes_point_at_each_other():
    english, chinese = ((ROOT / n).read_text(encoding="utf-8") for n in READMES)
    assert "](README.zh-CN.md)" in english and "notebooks/zh/" in english
    assert "](README.md)" in chinese


@pytest.mark.parametrize("path", CHAPTERS + TWINS, ids=rel)
def test_relative_links_in_markdown_resolve(path):
    links = [link for c in cells(path) if c["cell_type"] == "markdown" for link in LINK.findall(text(c))]
    local = [link.split("#")[0] for link in links
             if "://" not in link and not link.startswith(("#", "mailto:", "attachment:"))]  # embed.py checks these
    broken = [link for link in local if link and not (path.parent / link).exists()]
    assert not broken, f"{rel(path)}: links that do not resolve from {rel(path.parent)}/: {broken}"


def test_sync_copies_code_keeps_chinese_and_lists_stale_cells():
    spec = importlib.util.spec_from_file_location("zh_sync", ROOT / "notebooks" / "zh" / "sync.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    chapter = CHAPTERS[0]
    english, twin = (nbformat.read(p, as_version=4) for p in (chapter, chapter.parent / "zh" / chapter.name))
    code = next(c for c in english.cells if c.cell_type == "code")
    prose = next(c for c in english.cells if c.cell_type == "markdown")
    code.source += "\nprint('changed in English')"
    prose.source += "\n\nA new English sentence."
    english.cells.append(nbformat.v4.new_markdown_cell("A new English paragraph.", id="new-cell"))
    rebuilt, report = sync.build_twin(english, twin)
    by_id = {c.id: c for c in rebuilt.cells}
    assert by_id[code.id] == code, "code cells are copied from the English chapter"
    assert by_id[prose.id].source == next(c for c in twin.cells if c.id == prose.id).source, "Chinese kept"
    assert report == {"to translate": ["new-cell"], "to update": [prose.id], "dropped": []}
    by_id[prose.id].source += "\n\n新的一句。"  # the translator catches up; the next run marks the cell current
    assert sync.build_twin(english, rebuilt)[1]["to update"] == []
