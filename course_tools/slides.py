"""Slide decks from the chapters: the rule that writes their slide metadata, and reveal.js decks by nbconvert.

    python -m course_tools.slides --mark       # write the slide metadata into every chapter and twin
    python -m course_tools.slides --check      # write nothing; exit 1 if a notebook's metadata is not the rule's
    python -m course_tools.slides --out build/slides --executed build --lib slides/node_modules

The rule: a markdown cell that starts with a `#` or `##` heading starts a slide (the chapter's title slide, then
one slide per section); any other markdown cell starts a sub-slide below it; a code cell stays on the slide of
the text that introduces it (its output with it), and a code cell right after another code cell gets a sub-slide
of its own. Decks take their outputs from executed copies (`make course PROFILE=cpu` writes them to build/);
a Chinese twin's code cells are the English ones, so they take the English copy's outputs, matched by cell id.
reveal.js, MathJax, jQuery and RequireJS are copied next to the decks, so they open with no network.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat

from course_utils.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
HEADING = re.compile(r"(#{1,3}) ")
FENCE = re.compile(r"\s*(```|~~~)")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# A badge is an image from the internet: offline it is a broken picture, so a deck shows its link as text.
BADGE = re.compile(r"\[!\[([^\]]*)\]\(https?://[^)]+\)\]\(([^)]+)\)")
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
# The files each deck loads, relative to the lib folder beside the decks (package/path in node_modules).
LIB_FILES = {
    "reveal": "reveal.js",
    "jquery": "jquery/dist/jquery.min.js",
    "require": "requirejs/require.js",
    "mathjax": "mathjax/MathJax.js",
}
TEMPLATE_DIR = ROOT / "slides" / "templates"


def chapters() -> list[Path]:
    """Every chapter notebook and every Chinese twin, English first."""
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb")) + sorted((NOTEBOOKS / "zh").glob("[0-9]*.ipynb"))


def pieces(markdown: str) -> list[tuple[int, str]]:
    """A markdown cell cut before each heading of level 1-3 (none inside a code block): (level or 0, text)."""
    result: list[tuple[int, list[str]]] = [(0, [])]
    fenced = False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading:
            result.append((len(heading.group(1)), []))
        result[-1][1].append(line)
    return [(level, "".join(lines)) for level, lines in result if "".join(lines).strip()]


def sections(cells: list) -> int:
    """How many sections (headings of level 1 or 2: the title and each ``##``) a notebook has: one slide each."""
    return sum(level in (1, 2) for c in cells if c["cell_type"] == "markdown" for level, _ in pieces(_text(c)))


def _text(cell) -> str:
    """A cell's source as one string (stored as a list of lines or as one string)."""
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def slide_types(cells: list) -> list[str]:
    """The slide type the rule gives each cell (``slide``, ``subslide`` or ``-``)."""
    types = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            opens_section = any(level in (1, 2) for level, _ in pieces(_text(cell)))
            types.append("slide" if opens_section else "subslide")
        elif i > 0 and cells[i - 1]["cell_type"] == "code":
            types.append("subslide")
        else:
            types.append("-")
    return types


def split_sections(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The deck's cells: a markdown cell with a heading inside is cut there, so every section starts a slide.

    The text before the heading (a comment on the output above) stays on the slide before; a ``###`` heading
    starts a sub-slide; the rest keep the type stored in the notebook.
    """
    cells = []
    for cell in nb.cells:
        parts = pieces(cell.source) if cell.cell_type == "markdown" else []
        if len(parts) < 2:
            cells.append(cell)
            continue
        for j, (level, text) in enumerate(parts):
            kind = {1: "slide", 2: "slide", 3: "subslide"}.get(level, "-")
            piece = nbformat.v4.new_markdown_cell(text.rstrip("\n"), id=f"{cell.id}-{j}")
            piece.metadata["slideshow"] = {"slide_type": kind}
            if "attachments" in cell:  # a picture in any piece of the cell
                piece.attachments = copy.deepcopy(cell.attachments)
            cells.append(piece)
    nb.cells = cells
    return nb


def mark(path: Path, check: bool = False) -> bool:
    """Give every cell of one notebook the rule's slide type; True if the file changed (or would, with check)."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    for cell, kind in zip(nb.cells, slide_types(nb.cells), strict=True):
        cell.metadata["slideshow"] = {"slide_type": kind}
    new = nbformat.writes(nb) + "\n"  # what notebooks/zh/sync.py writes too
    if new != text and not check:
        write_text_atomic(path, new)
    return new != text


def executed_copy(source: Path, executed: Path | None) -> nbformat.NotebookNode | None:
    """The executed copy of an English chapter in ``executed``, if its code is the chapter's code of today."""
    if executed is None or not (executed / source.name).is_file():
        return None
    run = nbformat.read(executed / source.name, as_version=4)
    code = [(c.get("id"), c.source) for c in nbformat.read(source, as_version=4).cells if c.cell_type == "code"]
    if [(c.get("id"), c.source) for c in run.cells if c.cell_type == "code"] != code:
        return None  # run before the chapter changed: its outputs would sit under other code
    return run


def deck_notebook(source: Path, run: nbformat.NotebookNode | None) -> nbformat.NotebookNode:
    """The notebook a deck is made from: ``source`` with the outputs of ``run`` (by cell id), widgets left out."""
    nb = nbformat.read(source, as_version=4)
    outputs = {c.get("id"): c for c in run.cells if c.cell_type == "code"} if run is not None else {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("id") in outputs:
            done = outputs[cell.id]
            # a widget (a tqdm bar, chapter 2's explorer) needs a running kernel: the deck shows the rest
            cell.outputs = [o for o in copy.deepcopy(done.outputs) if WIDGET_VIEW not in o.get("data", {})]
            cell.execution_count = done.execution_count
        elif cell.cell_type == "markdown":
            cell.source = BADGE.sub(r"[\1](\2)", cell.source)
            attach_images(cell, source.parent)
    nb.metadata.pop("widgets", None)
    return split_sections(nb)


def attach_images(cell: nbformat.NotebookNode, folder: Path) -> None:
    """Make each local picture a markdown cell shows (``![a diagram](../images/x.png)``) an attachment of the cell.

    nbconvert embeds attachments in the deck; it does not embed a file outside the notebook's own folder,
    which is where the course keeps its diagrams (images/).
    """
    import base64
    import mimetypes

    def attach(match: re.Match) -> str:
        alt, link = match.groups()
        file = folder / link
        mime = mimetypes.guess_type(link)[0]
        if "://" in link or link.startswith("attachment:") or not file.is_file() or not mime:
            return match.group(0)
        name = file.name
        cell.setdefault("attachments", {})[name] = {mime: base64.b64encode(file.read_bytes()).decode("ascii")}
        return f"![{alt}](attachment:{name})"

    cell.source = IMAGE.sub(attach, cell.source)


def profile_of(executed: Path | None, name: str) -> str | None:
    """The profile of the newest run in ``executed`` that has notebook ``name`` (from timings-<profile>.json)."""
    records = sorted(executed.glob("timings-*.json"), key=lambda p: p.stat().st_mtime) if executed else []
    for record in reversed(records):
        data = json.loads(record.read_text(encoding="utf-8"))
        if any(r["notebook"] == name and not r["error"] for r in data["results"]):
            return data["profile"]
    return None


def export(nb: nbformat.NotebookNode, source: Path, lib: str, language: str) -> str:
    """One reveal.js deck as HTML, loading reveal.js, MathJax, jQuery and RequireJS from ``lib`` (a relative URL)."""
    html, _ = _exporter(lib, language).from_notebook_node(
        nb, resources={"metadata": {"path": str(source.parent), "name": source.stem}})
    return html


@functools.cache
def _exporter(lib: str, language: str):
    """The deck exporter for ``lib`` and ``language``, made once: its templates are compiled once for all decks."""
    from nbconvert import SlidesExporter

    return SlidesExporter(
        template_name="course-reveal",
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        reveal_url_prefix=f"{lib}/{LIB_FILES['reveal']}",
        reveal_number="c/t",
        jquery_url=f"{lib}/{LIB_FILES['jquery']}",
        require_js_url=f"{lib}/{LIB_FILES['require']}",
        mathjax_url=f"{lib}/{LIB_FILES['mathjax']}?config=TeX-AMS_CHTML-full,Safe",
        embed_images=True,
        language_code=language,
    )


def local_references(html: str) -> list[str]:
    """The scripts and style sheets a deck loads (src of <script>, href of <link>), query strings cut off."""
    refs = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", html) + re.findall(r"<link[^>]*\bhref=\"([^\"]+)\"", html)
    refs += re.findall(r"\"([^\"]+/dist/(?:reveal|theme/\w+)\.(?:js|css)|[^\"]+/plugin/notes/notes\.js)\"", html)
    return sorted({r.split("?")[0] for r in refs})


def count_slides(html: str) -> tuple[int, int]:
    """How many slides (top-level <section>s) and sub-slides (the <section>s inside them) a deck has."""
    from html.parser import HTMLParser

    class Sections(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth, self.counts = 0, [0, 0]

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "section":
                if self.depth < 2:
                    self.counts[self.depth] += 1
                self.depth += 1

        def handle_endtag(self, tag: str) -> None:
            if tag == "section":
                self.depth -= 1

    parser = Sections()
    parser.feed(html)
    return parser.counts[0], parser.counts[1]


def build(
    out: Path, executed: Path | None = None, node_modules: Path | None = None, notebooks: list[Path] | None = None
) -> list[dict]:
    """Write a deck for every chapter and twin (or ``notebooks``) to ``out`` (en/, zh/, index.html; lib/).

    The folder is written under a temporary name and swapped in when complete (all or nothing).
    """
    from course_utils.files import atomic_folder

    rows = []
    with atomic_folder(out, replace=True) as tmp:
        for source in notebooks or chapters():
            twin = source.parent.name == "zh"
            english = source.parent.parent / source.name if twin else source
            run = executed_copy(english, executed)
            html = export(deck_notebook(source, run), source, "../lib", "zh" if twin else "en")
            deck = Path("zh" if twin else "en") / f"{source.stem}.slides.html"
            (tmp / deck.parent).mkdir(exist_ok=True)
            (tmp / deck).write_text(html, encoding="utf-8")
            slides, subslides = count_slides(html)
            profile = None if run is None else profile_of(executed, english.name) or "an unrecorded"
            rows.append({"deck": deck.as_posix(), "slides": slides, "subslides": subslides, "outputs": profile})
        if node_modules is not None:
            copy_libraries(node_modules, tmp / "lib")
            refs = {ref for row in rows for ref in local_references((tmp / row["deck"]).read_text("utf-8"))}
            missing = sorted(ref for ref in refs if not (tmp / "en" / ref).resolve().is_file())
            if missing:
                raise FileNotFoundError(f"the decks load files that are not in {node_modules}: {', '.join(missing)}")
        write_index(tmp, rows)
    return rows


def copy_libraries(node_modules: Path, lib: Path) -> None:
    """Copy reveal.js, MathJax, jQuery and RequireJS from an npm install to ``lib`` (what the decks load)."""
    missing = [p for p in {f.split("/")[0] for f in LIB_FILES.values()} if not (node_modules / p).is_dir()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not in {node_modules}: run npm ci --prefix slides "
                                "(make slides does)")
    for package in sorted({f.split("/")[0] for f in LIB_FILES.values()}):
        target = lib / package
        if target.exists():
            shutil.rmtree(target)
        # MathJax 2's unpacked sources and PNG fonts (for browsers before 2012) are 3/4 of its size: left out
        shutil.copytree(node_modules / package, target, ignore=shutil.ignore_patterns("unpacked", "png", "*.md"))


def write_index(out: Path, rows: list[dict]) -> None:
    """An index page linking every deck, saying which outputs it holds."""
    from html import escape

    items = "\n".join(
        f'<li><a href="{escape(r["deck"])}">{escape(r["deck"])}</a>: {r["slides"]} slides '
        f'({r["subslides"]} with the sub-slides), '
        + (f'outputs from the {escape(r["outputs"])} profile' if r["outputs"] else "code only (not executed)")
        + "</li>" for r in rows)
    write_text_atomic(out / "index.html", f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                      f"<title>Diffusion course: slides</title></head>\n<body><h1>Slides / 幻灯片</h1>\n<ul>\n{items}\n"
                      "</ul></body></html>\n")


def main(argv: list[str] | None = None) -> int:
    """Mark or check the slide metadata, or build the decks."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mark", action="store_true", help="write the rule's slide metadata into the notebooks")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook's slide metadata is not the rule's")
    parser.add_argument("--out", type=Path, default=Path("build/slides"), help="where the decks go")
    parser.add_argument("--executed", type=Path, default=None, help="a folder of executed notebooks (make course)")
    parser.add_argument("--lib", type=Path, default=None,
                        help="node_modules holding reveal.js and the rest (npm ci --prefix slides)")
    args = parser.parse_args(argv)
    if args.mark or args.check:
        changed = [p.relative_to(ROOT).as_posix() for p in chapters() if mark(p, check=args.check)]
        if args.check and changed:
            print(f"slide metadata out of date in {', '.join(changed)}: run python -m course_tools.slides --mark")
            return 1
        print(f"{'would change' if args.check else 'marked'} {len(changed)} notebook(s)")
        return 0
    if args.executed is not None and not args.executed.is_dir():
        print(f"error: --executed {args.executed}: no such folder; run make course PROFILE=cpu or leave it out")
        return 2
    rows = build(args.out, args.executed, args.lib)
    for r in rows:
        print(f"{r['deck']}: {r['slides']} slides, {'outputs: ' + r['outputs'] if r['outputs'] else 'not executed'}")
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
