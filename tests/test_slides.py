"""Slide decks (course_tools.slides, `make slides`): the notebooks carry the rule's slide metadata, every chapter
and twin becomes a deck with a slide per section that loads nothing from the internet, with the outputs of an
executed copy when there is one (a twin takes its English chapter's)."""

import json
import re
import shutil
import socket

import nbformat
import pytest

from course_tools import slides

CHAPTERS = slides.chapters()


def rel(path):
    return path.relative_to(slides.ROOT).as_posix()


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_notebook_carries_the_rules_slide_metadata(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    stored = [c["metadata"].get("slideshow", {}).get("slide_type") for c in cells]
    wrong = [c.get("id") for c, s, r in zip(cells, stored, slides.slide_types(cells), strict=True) if s != r]
    assert not wrong, f"{rel(path)}: cells {wrong} lack the rule's slide type: run python -m course_tools.slides --mark"


def test_a_heading_inside_a_cell_starts_its_own_slide_and_code_blocks_are_not_headings():
    cell = nbformat.v4.new_markdown_cell("Read the table.\n\n## Next\nText\n```\n# a comment\n```\n### Detail\nMore",
                                         id="x")
    cells = [nbformat.v4.new_code_cell("1"), cell, nbformat.v4.new_code_cell("2"), nbformat.v4.new_code_cell("3")]
    assert slides.slide_types(cells) == ["-", "slide", "-", "subslide"]
    assert slides.sections(cells) == 1
    nb = nbformat.v4.new_notebook(cells=cells)
    for c, kind in zip(nb.cells, slides.slide_types(nb.cells), strict=True):
        c.metadata["slideshow"] = {"slide_type": kind}
    parts = slides.split_sections(nb).cells
    assert [(p.cell_type, p.metadata["slideshow"]["slide_type"]) for p in parts] == [
        ("code", "-"), ("markdown", "-"), ("markdown", "slide"), ("markdown", "subslide"), ("code", "-"),
        ("code", "subslide")]
    assert parts[1].source == "Read the table." and parts[2].source.startswith("## Next")
    assert "# a comment" in parts[2].source, "a line in a code block is not a heading"


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    """Every deck, built from the unexecuted notebooks with every network connection refused."""
    out = tmp_path_factory.mktemp("slides") / "slides"
    connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise OSError("the slides must build without network")

    socket.socket.connect = refuse
    try:
        rows = slides.build(out)
    finally:
        socket.socket.connect = connect
    return out, {row["deck"]: row for row in rows}


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_every_chapter_has_a_deck_with_a_slide_per_section(decks, path):
    out, rows = decks
    name = f"{'zh' if path.parent.name == 'zh' else 'en'}/{path.stem}.slides.html"
    assert name in rows, f"no deck for {rel(path)}"
    html = (out / name).read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    expected = slides.sections(nb.cells)
    assert slides.count_slides(html)[0] == expected == rows[name]["slides"], f"{name}: one slide per section"
    title = nb.cells[0].source.splitlines()[0].removeprefix("# ")
    first = html.split("<section", 2)[2].split("</section>")[0]
    assert title.split(" — ")[0] in first, f"{name}: the first slide is the chapter's title"
    remote = [ref for ref in slides.local_references(html) if "://" in ref or ref.startswith("//")]
    assert not remote, f"{name} loads {remote} from the internet; decks must work offline"
    assert all(ref.startswith("../lib/") for ref in slides.local_references(html)), "libraries come from lib/"
    assert not re.search(r"<img[^>]+src=\"(https?:)?//", html), f"{name} shows a picture from the internet"
    assert "colab.research.google.com/github/" in first, "the Colab badge stays, as a text link"


def test_a_twin_deck_has_as_many_slides_as_its_chapter(decks):
    _, rows = decks
    for name, row in rows.items():
        if name.startswith("zh/"):
            assert row["slides"] == rows["en/" + name[3:]]["slides"], name


def test_decks_show_an_executed_copys_outputs_in_both_editions_and_skip_a_stale_one(tmp_path):
    chapter = slides.NOTEBOOKS / "09_ddim_inversion.ipynb"
    twin = slides.NOTEBOOKS / "zh" / chapter.name
    executed = tmp_path / "build"
    executed.mkdir()
    run = nbformat.read(chapter, as_version=4)
    code = [c for c in run.cells if c.cell_type == "code"]
    code[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="printed by the cpu run\n"),
                        nbformat.v4.new_output("display_data", data={
                            "application/vnd.jupyter.widget-view+json": {"model_id": "m", "version_major": 2},
                            "text/plain": "a progress bar"})]
    nbformat.write(run, executed / chapter.name)
    (executed / "timings-cpu.json").write_text(json.dumps(
        {"profile": "cpu", "results": [{"notebook": chapter.name, "seconds": 1, "error": None}]}))
    rows = slides.build(tmp_path / "slides", executed, notebooks=[chapter, twin])
    assert [r["outputs"] for r in rows] == ["cpu", "cpu"]
    for deck in ("en", "zh"):
        html = (tmp_path / "slides" / deck / f"{chapter.stem}.slides.html").read_text(encoding="utf-8")
        assert "printed by the cpu run" in html, f"the {deck} deck lacks the executed copy's output"
        assert "a progress bar" not in html and "widget-view" not in html, "widgets need a kernel: left out"
    assert "outputs from the cpu profile" in (tmp_path / "slides" / "index.html").read_text(encoding="utf-8")

    code[0].source += "\n# changed since the run"
    nbformat.write(run, executed / chapter.name)
    assert slides.executed_copy(chapter, executed) is None, "a copy run on other code must not lend its outputs"


def test_build_copies_the_libraries_and_refuses_missing_ones(tmp_path):
    modules = tmp_path / "node_modules"
    with pytest.raises(FileNotFoundError, match="npm ci --prefix slides"):
        slides.build(tmp_path / "slides", node_modules=modules, notebooks=[CHAPTERS[0]])
    for package in ("reveal.js", "jquery", "requirejs", "mathjax"):
        (modules / package).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="reveal.js/dist/reveal.js"):
        slides.build(tmp_path / "slides", node_modules=modules, notebooks=[CHAPTERS[0]])
    assert not (tmp_path / "slides").exists(), "nothing half-written"
    real = slides.ROOT / "slides" / "node_modules"
    if not real.is_dir():
        return  # make slides installs them; the rest needs them
    shutil.rmtree(modules)
    slides.build(tmp_path / "slides", node_modules=real, notebooks=[CHAPTERS[0]])
    html = (tmp_path / "slides" / "en" / f"{CHAPTERS[0].stem}.slides.html").read_text(encoding="utf-8")
    assert all((tmp_path / "slides" / "en" / ref).resolve().is_file() for ref in slides.local_references(html))


def test_a_diagram_in_the_markdown_is_embedded_in_the_deck(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4), "red").save(tmp_path / "images" / "diagram.png")
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# Chapter X\n\nThe text.\n\n## A section\n\n![the loop](../images/diagram.png)")])
    nbformat.write(nb, tmp_path / "notebooks" / "99_x.ipynb")
    slides.build(tmp_path / "slides", notebooks=[tmp_path / "notebooks" / "99_x.ipynb"])
    html = (tmp_path / "slides" / "en" / "99_x.slides.html").read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,' in html, "a diagram beside the notebook travels inside the deck"
