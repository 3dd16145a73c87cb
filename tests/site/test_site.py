"""The course's website as a learner's browser shows it: every chapter and twin, no network.

`make test-site` runs this (never `make test`: tests/conftest.py leaves this folder out) on a site it has just
built from `small` executions (COURSE_SITE names the folder). It checks every link and anchor of the built HTML,
that no page loads a file from another host, then opens every page in Debian's Chromium with Playwright (the
browser test's way) from a server on 127.0.0.1: no console error or failed request, every image loaded, no TeX
left unrendered, the language switch reaching the twin and back. Screenshots go to build/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from course_tools.site.build import remote_resources

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("COURSE_SCREENSHOTS", ROOT / "build" / "screenshots"))
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCS = sorted(p.relative_to(ROOT).with_suffix(".html").as_posix() for p in (ROOT / "docs").rglob("*.md"))
# TeX a page shows as text when MathJax did not render it (code, preformatted outputs and MathJax's own
# nodes are taken out first).
RAW_TEX = re.compile(r"\$\$|\\(frac|sqrt|alpha|beta|sigma|epsilon|mathbf|mathcal|hat|bar|cdot|sum|begin)\b"
                     r"|\$[^$\s][^$\n]{0,80}\$")
VISIBLE_TEXT = """() => {
    const article = document.querySelector('article') || document.body;
    const copy = article.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, .MathJax_Preview, .mjx-chtml, .MJX_Assistive_MathML')
        .forEach(e => e.remove());
    return copy.innerText;
}"""


@pytest.fixture(scope="module")
def site() -> Path:
    folder = Path(os.environ.get("COURSE_SITE", ROOT / "build" / "site-test" / "site"))
    if not (folder / "index.html").is_file():
        pytest.fail(f"no site in {folder}: make test-site builds one (or set COURSE_SITE)")
    return folder


def test_every_chapter_and_twin_has_a_page(site: Path) -> None:
    missing = [page for ch in CHAPTERS for page in (f"notebooks/{ch}.html", f"notebooks/zh/{ch}.html")
               if not (site / page).is_file()]
    missing += [page for page in ["index.html", "zh/index.html", "search.html", *DOCS] if not (site / page).is_file()]
    assert not missing, f"pages missing from the site: {missing}"


def test_nothing_loads_from_another_host(site: Path) -> None:
    assert remote_resources(site) == [], "a page or style sheet loads a file from another host"


class _Links(HTMLParser):
    """The ids of one page and the local URLs it links or loads (href of a/link, src of img/script/source...)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        url = attrs.get("href") if tag in ("a", "link", "area") else attrs.get("src")
        if url and not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//", url):  # http:, mailto:, data:, javascript:
            self.urls.append(url)


@functools.cache
def _parse(file: Path) -> _Links:
    parser = _Links()
    parser.feed(file.read_text(encoding="utf-8", errors="replace"))
    return parser


def test_every_local_link_and_anchor_points_somewhere(site: Path) -> None:
    broken = []
    for file in sorted(site.rglob("*.html")):
        for url in _parse(file).urls:
            parts = urlsplit(url)
            target = (file.parent / unquote(parts.path) if parts.path else file).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or site.resolve() not in target.parents:
                broken.append(f"{file.relative_to(site)}: {url} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                broken.append(f"{file.relative_to(site)}: {url} (no such anchor)")
    assert not broken, f"{len(broken)} broken link(s):\n" + "\n".join(broken[:40])


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The site served on 127.0.0.1 (as GitHub Pages serves it: over HTTP, from its root)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _Watched:
    """A page with its console errors, uncaught exceptions, failed requests and answers >= 400 collected."""

    def __init__(self, page: Page, server: str) -> None:
        self.page, self.problems = page, []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        # (a navigation leaves the previous page's unfinished requests aborted: not a missing file)
        page.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED"
                and self.problems.append(f"failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        # nothing may leave 127.0.0.1: any other host is refused (and reported)
        page.route(re.compile(r"^(?!" + re.escape(server) + r").*"),
                   lambda route: (self.problems.append(f"remote: {route.request.url}"), route.abort()))

    def check(self, what: str) -> list[str]:
        """Wait for MathJax, then every problem of the page now on screen (its URL in each line)."""
        page = self.page
        page.wait_for_load_state("load")
        if page.evaluate("() => typeof MathJax !== 'undefined' && !!MathJax.Hub"):
            page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(true)))")
        found = [f"{what}: {p}" for p in self.problems]
        self.problems.clear()
        broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => i.complete && i.naturalWidth === 0)"
                                                  ".map(i => i.getAttribute('src').slice(0, 80))")
        found += [f"{what}: image not loaded: {src}" for src in broken]
        players = page.evaluate("""() => Promise.all([...document.querySelectorAll('audio')].map(a =>
            a.readyState >= 1 || a.error ? Promise.resolve(!a.error) : new Promise(done => {
                a.addEventListener('loadedmetadata', () => done(true)); a.addEventListener('error', () => done(false));
                a.load(); setTimeout(() => done(a.readyState >= 1), 5000); })))""")
        found += [f"{what}: {players.count(False)} of {len(players)} audio players cannot play"] \
            if False in players else []
        if "10_audio" in what and not players:
            found.append(f"{what}: no audio player")
        text = page.evaluate(VISIBLE_TEXT)
        found += [f"{what}: TeX left as text: ...{text[max(m.start() - 30, 0):m.end() + 30]}..."
                  for m in RAW_TEX.finditer(text)][:3]
        return found


def _switch(page: Page) -> None:
    with page.expect_navigation():
        page.click("#course-language")


def test_every_page_in_the_browser(site: Path, server: str, browser: Browser) -> None:
    """Each chapter, its twin (reached by the language switch, and back), the landing pages and the docs."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = _Watched(page, server)
    problems = []
    for chapter in CHAPTERS:
        english, chinese = f"{server}notebooks/{chapter}.html", f"{server}notebooks/zh/{chapter}.html"
        page.goto(english)
        problems += watched.check(english)
        outputs = page.locator("article .cell_output").count()
        _switch(page)
        if page.url != chinese:
            problems.append(f"{english}: the language switch leads to {page.url}, not {chinese}")
        problems += watched.check(page.url)
        twin_outputs = page.locator("article .cell_output").count()
        if not outputs or twin_outputs != outputs:  # the site is built from a run of every chapter
            problems.append(f"{chapter}: {outputs} outputs in English, {twin_outputs} in Chinese (want the same, > 0)")
        _switch(page)
        if page.url != english:
            problems.append(f"{chinese}: the language switch leads to {page.url}, not back to {english}")
    for other in ["index.html", "zh/index.html", "search.html?q=scheduler", *DOCS]:
        page.goto(urljoin(server, other))
        problems += watched.check(other)
        if other.endswith("index.html") or other.startswith("docs/"):
            twin_count = page.locator("#course-language").count()
            if twin_count != 1:
                problems.append(f"{other}: {twin_count} language switches (want 1)")
    page.close()
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])


def test_the_bundled_mathjax_renders_tex(site: Path, server: str, browser: Browser) -> None:
    """The chapters write their formulas in Unicode today, so no built page loads MathJax: a copy of the landing
    page with Sphinx's MathJax lines (the site's settings) and a formula checks that a page with TeX renders it."""
    import json

    from course_tools.site.conf import MATHJAX, settings

    config = settings({"repository": "", "twins": {}, "languages": {}, "runs": {}})["mathjax2_config"]
    head = (f'<script type="text/x-mathjax-config">MathJax.Hub.Config({json.dumps(config)})</script>'
            f'<script async="async" src="_static/{MATHJAX}"></script></head>')
    formula = r'<p><span class="math notranslate nohighlight">\(\frac{1}{2}\sqrt{\bar\alpha_t}\)</span></p></article>'
    probe = site / "math-probe.html"
    probe.write_text((site / "index.html").read_text(encoding="utf-8").replace("</head>", head, 1)
                     .replace("</article>", formula, 1), encoding="utf-8")
    try:
        page = browser.new_page()
        watched = _Watched(page, server)
        page.goto(f"{server}math-probe.html")
        problems = watched.check("math-probe.html")
        rendered = page.locator(".mjx-chtml").count()
        page.close()
    finally:
        probe.unlink()
    assert rendered >= 1 and not problems, f"MathJax rendered {rendered} formula(s); problems: {problems}"


def test_search_finds_a_chapter(server: str, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{server}search.html?q=DDIM")
    page.wait_for_selector("#search-results li a", timeout=30_000)
    hits = page.eval_on_selector_all("#search-results li a", "as => as.map(a => a.getAttribute('href'))")
    page.close()
    assert any("notebooks/" in h for h in hits), f"searching DDIM finds no chapter: {hits[:10]}"


def test_screenshots(server: str, browser: Browser) -> None:
    """The landing page (desktop and phone), a chapter and its twin, top of page and first picture."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = []
    for name, url, viewport, full in [
        ("site-landing.png", "index.html", {"width": 1280, "height": 900}, True),
        ("site-landing-phone.png", "index.html", {"width": 390, "height": 844}, True),
        ("site-landing-zh.png", "zh/index.html", {"width": 1280, "height": 900}, False),
        ("site-chapter-10.png", "notebooks/10_audio_diffusion.html", {"width": 1280, "height": 900}, False),
        ("site-chapter-10-zh.png", "notebooks/zh/10_audio_diffusion.html", {"width": 1280, "height": 900}, False),
    ]:
        page = browser.new_page(viewport=viewport)
        page.goto(urljoin(server, url))
        page.wait_for_load_state("load")
        page.screenshot(path=SCREENSHOTS / name, full_page=full)
        if name.startswith("site-chapter"):
            first = page.locator("article .cell_output img, article audio").first
            if first.count():
                first.scroll_into_view_if_needed()
                page.screenshot(path=SCREENSHOTS / name.replace(".png", "-outputs.png"))
                shots.append(name.replace(".png", "-outputs.png"))
        shots.append(name)
        page.close()
    assert all((SCREENSHOTS / s).stat().st_size > 10_000 for s in shots), "a screenshot is (nearly) blank"
