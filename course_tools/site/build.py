"""The course as a static website: every chapter and twin with its outputs, the reference pages, search.

    python -m course_tools.site --executed build --out build/site --lib slides/node_modules
    python -m course_tools.site ... --record benchmarks/results/site-cpu.json   # also record time and size

Sphinx with myst-nb renders the pages (sphinx-book-theme); nothing is executed here. A chapter's outputs come
from its executed copy in ``--executed`` (``make course`` writes them to build/); a Chinese twin's code cells are
the English ones, so it shows the English run's outputs, as the slides do. A chapter with no executed copy there
(or one run before its code changed) is said in one line and its page shows the code without outputs. The
built folder loads nothing from another host: MathJax is copied from ``--lib`` (``npm ci --prefix slides``), the
theme's fonts come with the theme, a widget is drawn as static HTML of its last state (no widget script); the build
fails if a page would load a remote file.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import nbformat

from course_tools.slides import BADGE, IMAGE, WIDGET_VIEW, executed_copy
from course_utils.files import atomic_folder, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHAPTER = re.compile(r"[0-9][0-9]_.*\.ipynb")
LINK = re.compile(r"(\]\()([^)\s]+)(\))")
SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
# MathJax 2.7.9 as the pages use it (TeX in, CommonHTML out, TeX fonts as woff): 5 MB of its 73
MATHJAX_PARTS = ["MathJax.js", "config/TeX-AMS_CHTML.js", "jax/input/TeX", "jax/element", "jax/output/CommonHTML",
                 "fonts/HTML-CSS/TeX/woff", "extensions", "localization/en"]
LANDING = {"en": "index", "zh": "zh/index"}
# The cell whose picture stands for each chapter on the landing page (samples of what the chapter makes); a chapter
# not named here, or whose cell shows no picture in the run, gets its first picture shaped like a card.
PICTURES = {"00": "c012", "01": "c032", "02": "c024", "03": "c032p1", "04": "c019", "05": "c020", "06": "c017",
            "07": "c009", "08": "c8-colours-run", "09": "c016", "10": "c010", "11": "0bff81a6", "12": "c029c",
            "13": "c042", "14": "c025"}
WORDS = {
    "en": {"missing": "not executed", "run": "Outputs from the {profile} profile's run on {device}, {date}",
           "unrecorded": "Outputs from a run in {folder}/ (profile not recorded), {date}",
           "code_only": "Not executed in {folder}/: this page shows the chapter's code without outputs.",
           "note": "This chapter was not executed for this website: its code is shown without outputs."},
    "zh": {"missing": "未执行", "run": "输出来自 {profile} 配置档的运行（{device}，{date}）",
           "unrecorded": "输出来自 {folder}/ 中的一次运行（未记录配置档），{date}",
           "code_only": "{folder}/ 中没有执行过的副本：本页只显示本章的代码，没有输出。",
           "note": "本网站构建时这一章没有执行：页面只显示代码，没有输出。"},
}


def repository() -> str:
    """The repository's web address, from pyproject.toml's ``[project.urls] Repository``."""
    import tomllib

    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    return urls["Repository"].rstrip("/")


def pages_url(repo: str) -> str:
    """Where GitHub Pages publishes the site of ``repo`` (https://github.com/OWNER/NAME)."""
    owner, name = repo.split("/")[-2:]
    return f"https://{owner.lower()}.github.io/{name}/"


def english_chapters() -> list[Path]:
    """The English chapters, in order."""
    return sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if CHAPTER.fullmatch(p.name))


def runs(executed: Path | None) -> dict[str, dict]:
    """The run record (profile, device, date) of each notebook in ``executed``'s timings-<profile>.json files."""
    found: dict[str, dict] = {}
    records = sorted(executed.glob("timings-*.json"), key=lambda p: p.stat().st_mtime) if executed else []
    for record in records:  # the newest record last, so it wins
        data = json.loads(record.read_text(encoding="utf-8"))
        for r in data.get("results", []):
            if not r.get("error"):
                found[r["notebook"]] = {k: data.get(k) for k in ("profile", "device", "date", "machine")}
    return found


def rewrite_links(text: str, page: str, site_files: set[str], repo: str) -> str:
    """Links of a markdown text at repository path ``page``: kept where the site has the target, the README's to
    the landing pages, the rest (code, folders, files the site leaves out) to the repository on GitHub."""
    badge_free = BADGE.sub(r"[\1](\2)", text)

    def one(match: re.Match) -> str:
        target = match.group(2)
        if SCHEME.match(target) or target.startswith("#"):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        landing = {"README.md": "index.md", "README.zh-CN.md": "zh/index.md"}.get(resolved)
        if resolved in site_files or (landing and not anchor):
            if landing:
                return f"{match.group(1)}{posixpath.relpath(landing, posixpath.dirname(page) or '.')}{match.group(3)}"
            return match.group(0)
        kind = "tree" if (ROOT / resolved).is_dir() else "blob"
        return f"{match.group(1)}{repo}/{kind}/main/{resolved}{hash_}{anchor}{match.group(3)}"

    return LINK.sub(one, badge_free)


def local_images(text: str, page: str) -> set[str]:
    """The repository files a markdown text at ``page`` shows as pictures (``![...](../x.png)``)."""
    found = set()
    for _alt, target in IMAGE.findall(text):
        if not SCHEME.match(target):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), target.partition("#")[0]))
            if (ROOT / resolved).is_file():
                found.add(resolved)
    return found


def widget_html(view: dict, state: dict) -> str:
    """A widget's last state as static HTML (no script): a tqdm bar finished, a slider and a dropdown where they
    were left, an image widget's picture; empty for a widget with nothing to show. ``state``: the notebook's
    saved widget state (``metadata.widgets``), ``view``: an output's widget-view data."""
    from html import escape

    def one(model_id: str) -> str:
        model = state.get(model_id.removeprefix("IPY_MODEL_"), {})
        name, s = model.get("model_name", ""), model.get("state", {})
        description = f"<span>{escape(str(s.get('description') or ''))}</span> " if s.get("description") else ""
        if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"):
            inner = "".join(one(child) for child in s.get("children", []))
            return f'<div class="course-widget-{"row" if name == "HBoxModel" else "column"}">{inner}</div>'
        if name == "HTMLModel":
            return f"<span>{s.get('value', '')}</span>"  # tqdm's own escaped text
        if name == "LabelModel":
            return f"<span>{escape(str(s.get('value', '')))}</span>"
        if name in ("FloatProgressModel", "IntProgressModel"):
            return f'<progress value="{s.get("value", 0)}" max="{s.get("max", 1)}"></progress>'
        if name in ("IntSliderModel", "FloatSliderModel"):
            return (f'<label>{description}<input type="range" disabled min="{s.get("min", 0)}" max="{s.get("max", 0)}"'
                    f' value="{s.get("value", 0)}"> {escape(str(s.get("value", "")))}</label>')
        if name == "DropdownModel":
            labels, index = s.get("_options_labels", []), s.get("index")
            chosen = labels[index] if isinstance(index, int) and index < len(labels) else ""
            return f"<label>{description}<select disabled><option>{escape(str(chosen))}</option></select></label>"
        if name == "ImageModel":
            data = next((b["data"] for b in model.get("buffers", []) if b.get("path") == ["value"]), None)
            return f'<img src="data:image/{s.get("format", "png")};base64,{data}" alt="">' if data else ""
        return ""

    return one(view.get("model_id", ""))


def page_notebook(source: Path, run: nbformat.NotebookNode | None, site_files: set[str], repo: str,
                  language: str) -> nbformat.NotebookNode:
    """A chapter or twin as its page shows it: the run's outputs by cell id (widgets left out), the collapsed
    "Checks" cells folded (``hide-input``), badges as text links, links mended (``rewrite_links``)."""
    nb = nbformat.read(source, as_version=4)
    page = source.relative_to(ROOT).as_posix()
    outputs = {c.get("id"): c for c in run.cells if c.cell_type == "code"} if run is not None else {}
    attachments = nb.metadata.setdefault("course_site_attachments", {})
    saved = run.metadata.get("widgets", {}) if run is not None else {}
    widgets = saved.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source, page, site_files, repo)
            for name, data in cell.pop("attachments", {}).items():  # myst-nb shows files, not attachments
                mime, encoded = next(iter(data.items()))
                file = f"_attachments/{source.stem}-{name}"  # one file for a chapter and its twin
                attachments[file] = base64.b64decode(encoded)
                link = posixpath.relpath(file, posixpath.dirname(page))
                cell.source = cell.source.replace(f"attachment:{name}", link)
            continue
        if cell.cell_type != "code":
            continue
        done = outputs.get(cell.get("id"))
        cell.outputs = [static_widget(o, widgets) for o in done.outputs] if done else []
        cell.outputs = [o for o in cell.outputs if o is not None]
        cell.execution_count = done.execution_count if done else None
        if cell.metadata.get("jupyter", {}).get("source_hidden"):
            cell.metadata.setdefault("tags", []).append("hide-input")
    nb.metadata.pop("widgets", None)
    if run is None:  # said on the page, right under the title
        note = nbformat.v4.new_markdown_cell(f":::{{note}}\n{WORDS[language]['note']}\n:::")
        note.id = "course-site-not-executed"
        nb.cells.insert(1, note)
    return nb


def static_widget(output: dict, widgets: dict) -> dict | None:
    """An output as the page shows it: a widget as its last state in static HTML (``widget_html``), or None
    where that shows nothing; any other output as it is."""
    view = output.get("data", {}).get(WIDGET_VIEW)
    if view is None:
        return copy.deepcopy(output)
    html = widget_html(view, widgets)
    return nbformat.v4.new_output("display_data", data={"text/html": f'<div class="course-widget">{html}</div>'}) \
        if html else None


def title_of(nb: nbformat.NotebookNode) -> str:
    """A notebook's title: its first ``#`` heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


def picture(run: nbformat.NotebookNode, file: Path, width: int = 480) -> bool:
    """Save one picture of the run to ``file`` (at most ``width`` pixels wide), for the chapter's card: the one
    ``PICTURES`` names, else the first PNG output shaped like a card (0.6 to 2.2 times as wide as high, at least 150
    pixels wide), else the first one cut to that shape (a strip of samples: its first ones); False if none."""
    from PIL import Image

    images, pinned = [], []
    for cell in run.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {}).get("image/png")
            if data:
                images.append(Image.open(io.BytesIO(base64.b64decode(data))))
                if cell.get("id") == PICTURES.get(file.stem[:2]):
                    pinned.append(images[-1])
    if not images:
        return False
    card = [i for i in images if i.width >= 150 and 0.6 <= i.width / i.height <= 2.2]
    big = [i for i in images if i.width >= 150] or images
    image = pinned[0] if pinned else card[0] if card else big[0]
    if image.width > 2.2 * image.height:  # a strip of samples: its first ones, twice as wide as high
        image = image.crop((0, 0, 2 * image.height, image.height))
    elif image.height > image.width / 0.6:  # a column: its top
        image = image.crop((0, 0, image.width, int(image.width / 0.6)))
    image.thumbnail((width, width))
    file.parent.mkdir(parents=True, exist_ok=True)
    image.save(file, format="PNG", optimize=True)
    return True


def chapter_rows(readme: Path) -> dict[str, str]:
    """What each chapter teaches, from a README's chapter table (``| N | [name](...) | what | ...``)."""
    rows = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*\d+\s*\|\s*\[([^\]]+)\]\([^)]*\)\s*\|([^|]*)\|", line)
        if match:
            rows[match.group(1).strip()] = match.group(2).strip()
    return rows


def card_text(markdown: str) -> str:
    """A README table cell (markdown with ``code``) as HTML."""
    from html import escape

    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown, quote=False))


def landing(language: str, chapters: list[dict], repo: str) -> str:
    """The landing page of one language: its text (landing.<language>.md) with the chapters' cards filled in
    (raw HTML: a grid of links, each with the chapter's picture, title and what it teaches)."""
    from html import escape

    words = WORDS[language]
    prefix = "" if language == "en" else "../"
    cards = []
    for ch in chapters:
        title = escape(ch["title"][language])
        image = (f'<img src="{prefix}_static/{ch["picture"]}" alt="">' if ch["picture"] else
                 f'<span class="course-chapter-missing">{words["missing"]}</span>')
        cards.append(f'<a class="course-chapter" href="{prefix}{ch["page"][language]}.html">{image}'
                     f'<span class="course-chapter-title">{title}</span>'
                     f'<span class="course-chapter-text">{card_text(ch["teaches"][language])}</span></a>')
    grid = '<div class="course-chapters">\n' + "\n".join(cards) + "\n</div>"
    text = (HERE / f"landing.{language}.md").read_text(encoding="utf-8")
    return text.replace("{{chapters}}", grid).replace("{{repository}}", repo)


def copy_mathjax(node_modules: Path, static: Path) -> None:
    """The parts of MathJax 2.7.9 the pages use, from an npm install (``npm ci --prefix slides``)."""
    source = node_modules / "mathjax"
    if not (source / "MathJax.js").is_file():
        raise FileNotFoundError(f"no MathJax in {node_modules}: run npm ci --prefix slides (make site does)")
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, static / "mathjax" / part)
        else:
            (static / "mathjax" / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, static / "mathjax" / part)


def stage(src: Path, executed: Path | None, node_modules: Path, repo: str) -> dict:
    """Write the Sphinx project (pages, pictures, conf.py) into ``src``; return what was staged."""
    shutil.copytree(ROOT / "images", src / "images")
    shutil.copytree(HERE / "static", src / "_static")
    copy_mathjax(node_modules, src / "_static")
    docs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
    english = english_chapters()
    site_files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "images").rglob("*") if p.is_file()}
    site_files |= set(docs) | {f"notebooks/{p.name}" for p in english} | {f"notebooks/zh/{p.name}" for p in english}
    pictures = {image for doc in docs for image in local_images((ROOT / doc).read_text(encoding="utf-8"), doc)}
    for image in sorted(pictures - site_files):  # e.g. the model cards' sample grids
        (src / image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / image, src / image)
    site_files |= pictures
    for doc in docs:
        (src / doc).parent.mkdir(parents=True, exist_ok=True)
        (src / doc).write_text(rewrite_links((ROOT / doc).read_text(encoding="utf-8"), doc, site_files, repo),
                               encoding="utf-8")
    records = runs(executed)
    teaches = {"en": chapter_rows(ROOT / "README.md"), "zh": chapter_rows(ROOT / "README.zh-CN.md")}
    staged = {"chapters": [], "missing": [], "twins": {}, "languages": {}, "runs": {}}
    for source in english:
        run = executed_copy(source, executed)
        if run is None:
            why = "not executed there" if executed is None or not (executed / source.name).is_file() else \
                "executed before its code changed"
            print(f"site: {source.name} {why} ({executed or 'no --executed'}): its pages show the code "
                  "without outputs", flush=True)
            staged["missing"].append(source.name)
        record = records.get(source.name)
        chapter = {"page": {}, "title": {}, "teaches": {}, "picture": None}
        for language, file in (("en", source), ("zh", ROOT / "notebooks" / "zh" / source.name)):
            page = file.relative_to(ROOT).with_suffix("").as_posix()
            nb = page_notebook(file, run, site_files, repo, language)
            (src / page).parent.mkdir(parents=True, exist_ok=True)
            for name, data in nb.metadata.pop("course_site_attachments").items():
                (src / name).parent.mkdir(exist_ok=True)
                (src / name).write_bytes(data)
            nbformat.write(nb, src / f"{page}.ipynb")
            chapter["page"][language] = page
            chapter["title"][language] = title_of(nb)
            chapter["teaches"][language] = teaches[language].get(source.stem, "")
            staged["languages"][page] = language
            staged["runs"][page] = footer(language, run, record, executed, source)
        staged["twins"][chapter["page"]["en"]] = chapter["page"]["zh"]
        staged["twins"][chapter["page"]["zh"]] = chapter["page"]["en"]
        if run is not None and picture(run, src / "_static" / "pictures" / f"{source.stem}.png"):
            chapter["picture"] = f"pictures/{source.stem}.png"
        staged["chapters"].append(chapter)
    for language, page in LANDING.items():
        (src / page).parent.mkdir(parents=True, exist_ok=True)
        (src / f"{page}.md").write_text(landing(language, staged["chapters"], repo), encoding="utf-8")
        staged["languages"][page] = language
    staged["twins"].update({LANDING["en"]: LANDING["zh"], LANDING["zh"]: LANDING["en"]})
    for doc in docs:
        page = doc.removesuffix(".md")
        chinese = page.startswith("docs/zh/")
        twin = page.replace("docs/zh/", "docs/", 1) if chinese else page.replace("docs/", "docs/zh/", 1)
        staged["languages"][page] = "zh" if chinese else "en"
        staged["twins"][page] = twin if f"{twin}.md" in docs else LANDING["en" if chinese else "zh"]
    context = {"repository": repo, "twins": staged["twins"], "languages": staged["languages"],
               "runs": staged["runs"]}
    (src / "site.json").write_text(json.dumps(context, ensure_ascii=False, indent=1), encoding="utf-8")
    (src / "conf.py").write_text(
        "import json\nfrom pathlib import Path\n\nfrom course_tools.site.conf import settings\n\n"
        "globals().update(settings(json.loads((Path(__file__).parent / 'site.json').read_text('utf-8'))))\n",
        encoding="utf-8")
    return staged


def footer(language: str, run, record: dict | None, executed: Path | None, source: Path) -> str:
    """The page footer's line about the run its outputs come from."""
    words = WORDS[language]
    if run is None:
        return words["code_only"].format(folder=executed or "--executed")
    if record:
        return words["run"].format(**record)
    stamp = date.fromtimestamp((executed / source.name).stat().st_mtime).isoformat()
    return words["unrecorded"].format(folder=executed, date=stamp)


def toctrees(staged: dict, docs: list[str]) -> str:
    """The site's navigation, appended to the English landing page (hidden: the sidebar shows it)."""
    english = [c["page"]["en"] for c in staged["chapters"]]
    chinese = [c["page"]["zh"] for c in staged["chapters"]]
    en_docs = [d.removesuffix(".md") for d in docs if not d.startswith("docs/zh/")]
    zh_docs = [d.removesuffix(".md") for d in docs if d.startswith("docs/zh/")]
    blocks = [("Chapters", english), ("Reference", en_docs), ("中文", [LANDING["zh"], *chinese]),
              ("参考页面", zh_docs)]
    return "".join(f"\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n" + "\n".join(f"/{p}" for p in pages)
                   + "\n```\n" for caption, pages in blocks)


RESOURCE = re.compile(r"<(script|link|img|audio|source|video|iframe|embed)\b[^>]*?\b(src|href)=\"([^\"]*)\"", re.I)
CSS_URL = re.compile(r"(?:url\(\s*['\"]?|@import\s+['\"])(https?:)?//", re.I)


def remote_resources(site: Path) -> list[str]:
    """Every file a built page or style sheet would load from another host (``file: url``); links to read are fine."""
    found = []
    for file in sorted(site.rglob("*.html")):
        for tag, _attr, url in RESOURCE.findall(file.read_text(encoding="utf-8", errors="replace")):
            is_link = tag.lower() == "link"
            if re.match(r"(https?:)?//", url) and not (is_link and _is_navigation_link(file, url)):
                found.append(f"{file.relative_to(site)}: {url}")
    for file in sorted(site.rglob("*.css")):
        if CSS_URL.search(file.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{file.relative_to(site)}: a url() or @import from another host")
    return found


def _is_navigation_link(file: Path, url: str) -> bool:
    """Whether a ``<link href=url>`` in ``file`` is one a browser does not load (rel canonical, alternate...)."""
    text = file.read_text(encoding="utf-8", errors="replace")
    for tag in re.findall(r"<link\b[^>]*>", text, re.I):
        if f'href="{url}"' in tag:
            rel = re.search(r"\brel=\"([^\"]*)\"", tag, re.I)
            return rel is not None and rel.group(1).lower() not in ("stylesheet", "preload", "icon", "modulepreload",
                                                                    "shortcut icon", "manifest", "prefetch")
    return False


def build(out: Path, executed: Path | None, node_modules: Path, quiet: bool = True) -> dict:
    """Stage the project, run Sphinx, check that no page loads a remote file; the folder ``out`` is swapped in
    whole when everything passed (nothing else is written beside it). Returns what was built: pages, seconds,
    bytes, the chapters without outputs."""
    from sphinx.cmd.build import build_main

    start = time.perf_counter()
    repo = repository()
    with tempfile.TemporaryDirectory(prefix="course-site-") as tmp:
        src, html = Path(tmp) / "src", Path(tmp) / "site"  # myst-nb writes jupyter_execute/ beside the site
        src.mkdir()
        staged = stage(src, executed, node_modules, repo)
        docs = sorted(p.relative_to(src).as_posix() for p in (src / "docs").rglob("*.md"))
        with open(src / "index.md", "a", encoding="utf-8") as index:
            index.write(toctrees(staged, docs))
        args = ["-b", "html", "-d", str(Path(tmp) / "doctrees"), "--fail-on-warning", "--keep-going",
                *(["-q"] if quiet else []), str(src), str(html)]
        if build_main(args) != 0:
            raise RuntimeError("sphinx-build failed (its warnings are above)")
        shutil.rmtree(html / ".doctrees", ignore_errors=True)
        (html / ".buildinfo").unlink(missing_ok=True)
        for macros in (html / "_static").glob("*macros.html"):  # the themes' Jinja macros, copied as if static
            macros.unlink()
        for source_map in (html / "_static").rglob("*.map"):  # the themes' source maps (3.5 MB, for debuggers)
            source_map.unlink()
        (html / ".nojekyll").touch()  # GitHub Pages: serve _static/ and _sources/ as they are
        remote = remote_resources(html)
        if remote:
            raise RuntimeError("pages would load files from another host:\n  " + "\n  ".join(remote))
        pages = len(list(html.rglob("*.html")))
        size = sum(f.stat().st_size for f in html.rglob("*") if f.is_file())
        with atomic_folder(out, replace=True) as final:  # all or nothing
            for item in html.iterdir():
                shutil.move(item, final / item.name)
    return {"pages": pages, "seconds": round(time.perf_counter() - start, 1), "bytes": size,
            "missing": staged["missing"]}


def record(file: Path, result: dict, executed: Path | None) -> dict:
    """Write the build's time and size to ``file`` (JSON): what the measurements page's table reads."""
    from course_tools.run_course import machine

    profiles = sorted({r["profile"] for r in runs(executed).values() if r.get("profile")})
    data = {"seconds": result["seconds"], "megabytes": round(result["bytes"] / 2**20, 1), "pages": result["pages"],
            "chapters_without_outputs": result["missing"], "profile": "+".join(profiles) or None,
            "machine": machine(), "load": [round(x, 2) for x in os.getloadavg()], "date": date.today().isoformat(),
            "source": "python -m course_tools.site --record"}
    write_text_atomic(file, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    """Build the website; print where it is, how long it took and how big it is."""
    parser = argparse.ArgumentParser(prog="python -m course_tools.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/site"), help="where the site goes (build/site)")
    parser.add_argument("--executed", type=Path, default=None,
                        help="the folder of executed notebooks (make course writes build/); left out: code only")
    parser.add_argument("--lib", type=Path, default=Path("slides/node_modules"),
                        help="node_modules holding MathJax 2.7.9 (npm ci --prefix slides)")
    parser.add_argument("--record", type=Path, default=None, metavar="FILE",
                        help="also write the build's time and size to FILE (benchmarks/results/site-cpu.json)")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    args = parser.parse_args(argv)
    if args.executed is not None and not args.executed.is_dir():
        print(f"error: --executed {args.executed}: no such folder; run make course PROFILE=cpu or leave it out",
              file=sys.stderr)
        return 2
    try:
        result = build(args.out, args.executed, args.lib, quiet=not args.verbose)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"site: {result['pages']} pages, {result['bytes'] / 2**20:.1f} MB in {result['seconds']:.0f} s; "
          f"open {args.out / 'index.html'}")
    if args.record is not None:
        record(args.record, result, args.executed)
        print(f"recorded in {args.record}")
    return 0
