"""What a learner sees in JupyterLab: chapters 0-2 and one Chinese chapter run in a real browser.

`make test-browser` runs this (never `make test`: tests/conftest.py leaves this folder out). It starts
JupyterLab on notebooks/ on 127.0.0.1 in the `small` profile, drives Debian's Chromium with Playwright,
runs every cell through the Run menu and then checks the page: no error and no stderr output in any cell,
tqdm bars drawn as widgets, the chapter-2 explorer redrawing its image when its slider moves, the
notebook files on disk unchanged. Full-page screenshots go to build/screenshots/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from course_tools.run_course import write_html

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHAPTERS = [
    "00_setup_and_data.ipynb",
    "01_diffusion_from_scratch.ipynb",
    "02_noise_schedule.ipynb",
    "zh/00_setup_and_data.ipynb",
]
# One chapter, all cells: 10-25 s each on an idle 2-core machine, but several minutes when other jobs
# share the cores; the whole test's time goal is the README's, not this limit.
RUN_TIMEOUT_S = 480
# Chromium as root with no network: no sandbox, and none of its background connections to Google's hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

# Settings a learner could choose too; here they keep the run from writing into notebooks/ (autosave),
# from asking a news feed on the internet, and the screenshots free of the blank page below the last cell.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
# The chapters (and twins) whose markdown carries a diagram as a cell attachment (images/embed.py).
# Chapter 0 trains nothing and reads local or cached data (datasets' bars are hidden for a local folder): no bar.
NO_PROGRESS_BARS = {"00_setup_and_data.ipynb"}
DIAGRAM_CHAPTERS = sorted(p.relative_to(NOTEBOOKS).as_posix() for p in [*NOTEBOOKS.glob("*.ipynb"),
                                                                         *NOTEBOOKS.glob("zh/*.ipynb")]
                          if "](attachment:" in p.read_text(encoding="utf-8"))
LOADED_IMAGES = """sel => [...document.querySelectorAll(sel)].map(img => {
  img.scrollIntoView();
  return {alt: img.alt, width: img.naturalWidth, complete: img.complete, web: /^https?:/.test(img.src)}; })"""

# Counts tqdm's widget bars as they appear: bars made with leave=False are removed when they finish.
COUNT_PROGRESS_BARS = """
window.__progressBars = 0;
new MutationObserver(mutations => {
  for (const m of mutations) for (const n of m.addedNodes)
    if (n.nodeType === 1 && (n.matches('.widget-hprogress') || n.querySelector('.widget-hprogress')))
      window.__progressBars++;
}).observe(document, {childList: true, subtree: true});
"""
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
PROMPTS = f"[...document.querySelectorAll('{NOTEBOOK} .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim())"


class Lab:
    """A running JupyterLab server: its address and the token to put in URLs and API calls."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def api(self, method: str, path: str) -> object:
        """Call the server's REST API and return the decoded JSON (None for an empty reply)."""
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _knows_python3(lab: Lab) -> bool:
    """Whether the server answers and lists the kernel the notebooks ask for."""
    try:
        return "python3" in lab.api("GET", "/api/kernelspecs")["kernelspecs"]
    except OSError:
        return False


def _lab_env(home: Path) -> dict[str, str]:
    """The server's (and so the kernels') environment: the test profile, offline, no user config."""
    env = dict(os.environ)
    for name in ("MPLBACKEND", "PYTHONWARNINGS"):  # what a learner's kernel would not have
        env.pop(name, None)
    env.update(
        COURSE_PROFILE="small", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        JUPYTER_CONFIG_DIR=str(home / "jupyter-config"), JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"), IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",  # jupyter_core's own future default; without it, it warns about migrating
    )
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on notebooks/, 127.0.0.1, a fresh token; always stopped, even when a test fails, and the
    checkpoint folders it makes beside the notebooks it opens removed."""
    home = tmp_path_factory.mktemp("lab")
    checkpoints_before = set(NOTEBOOKS.rglob(".ipynb_checkpoints"))
    for plugin, values in LAB_SETTINGS.items():
        file = home / "settings" / f"{plugin}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(24)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--ServerApp.root_dir={NOTEBOOKS}",
               f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    if os.geteuid() == 0:  # CI and these machines run as root; Jupyter refuses that without this flag
        command.append("--ServerApp.allow_root=True")
    log_path = ROOT / "build" / "browser-test-lab.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = _lab_env(home)
    env["JUPYTER_TOKEN"] = token  # passed by environment, so it shows in no command line; Jupyter logs it as '...'
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        running = Lab(f"http://127.0.0.1:{port}", token)
        deadline = time.monotonic() + 60
        while not _knows_python3(running):  # else Lab's first page asks the learner to pick a kernel
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start within 60 s (exit code {server.poll()}); see {log_path}")
            time.sleep(0.5)
        yield running
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        for folder in set(NOTEBOOKS.rglob(".ipynb_checkpoints")) - checkpoints_before:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (Playwright's own browser download is never used)."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail(f"no Chromium at {executable}: `make test-browser` installs Debian's chromium, "
                    "or set CHROMIUM=/path/to/chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _run_all_cells(page: Page, n_code_cells: int, timeout_s: float) -> None:
    """Run > Run All Cells, as a learner would, and wait until no cell is queued or running."""
    # Ready: every code cell is on the page and the kernel has started and is idle (before that the status
    # bar says "No Kernel | Initializing", then "Python 3 (ipykernel) | Connecting").
    page.wait_for_function(f"""() => {PROMPTS}.length === {n_code_cells} &&
        [...document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem')]
            .some(e => e.innerText.trim() === 'Python 3 (ipykernel) | Idle')""", timeout=90_000, polling=250)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    page.wait_for_function(f"() => {PROMPTS}.every(t => t !== '[*]:')", timeout=timeout_s * 1000, polling=500)


def _outputs(page: Page, mime_type: str) -> list[str]:
    return page.eval_on_selector_all(f"{NOTEBOOK} .jp-OutputArea-output[data-mime-type='{mime_type}']",
                                     "els => els.map(e => e.innerText.trim())")


def _image_digest(page: Page, image_selector: str) -> str:
    """sha256 of the bytes the browser shows in an <img> (a widget's image is a blob: URL)."""
    data = page.eval_on_selector(image_selector, """async img => {
        const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
        let s = ''; for (const b of bytes) s += String.fromCharCode(b);
        return btoa(s);
    }""")
    return hashlib.sha256(base64.b64decode(data)).hexdigest()


def _check_explorer(page: Page, shots: str) -> None:
    """Chapter 2's explorer is a live widget: one arrow key on its slider redraws its image."""
    explorer = page.locator(f"{NOTEBOOK} .widget-vbox").filter(has=page.locator(".widget-slider")).first
    explorer.scroll_into_view_if_needed()
    image = f"{NOTEBOOK} .widget-vbox .widget-image"
    readout = explorer.locator(".widget-slider .widget-readout").element_handle()
    shows = "([r, value]) => r.textContent.trim() === value"
    page.wait_for_function(shows, arg=[readout, "500"], timeout=10_000)  # the cell's slider starts at t = 500
    before = _image_digest(page, image)
    explorer.screenshot(path=SCREENSHOTS / f"{shots}-explorer-t500.png")
    explorer.locator(".widget-slider .noUi-handle").first.press("ArrowRight")  # one step of 10
    page.wait_for_function(shows, arg=[readout, "510"], timeout=10_000)
    deadline = time.monotonic() + 30  # the kernel draws the new figure, then the browser gets its PNG
    while _image_digest(page, image) == before:
        assert time.monotonic() < deadline, "the slider moved to t = 510 but the explorer's image stayed the same"
        time.sleep(0.25)
    explorer.screenshot(path=SCREENSHOTS / f"{shots}-explorer-t510.png")


def _full_page_screenshot(page: Page, path: Path) -> None:
    """The whole notebook in one picture: a viewport as tall as the notebook (at most 16,000 px)."""
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()  # fold the file browser away
    scroller = f"{NOTEBOOK} .jp-WindowedPanel-outer"
    height = 900
    for _ in range(6):  # off-screen cells have estimated heights until drawn, so grow until nothing is hidden
        hidden = page.eval_on_selector(scroller, "e => { e.scrollTop = 0; return e.scrollHeight - e.clientHeight; }")
        if hidden <= 0 or height >= 16_000:
            break
        height = min(height + hidden, 16_000)
        page.set_viewport_size({"width": 1280, "height": height})
        page.wait_for_timeout(700)  # let Lab lay the cells out for the new size
    page.screenshot(path=path)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_in_lab(lab: Lab, browser: Browser, chapter: str) -> None:
    """Run all cells of one chapter in Lab and check what the learner sees."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = chapter.removesuffix(".ipynb").replace("/", "_")
    on_disk = (NOTEBOOKS / chapter).read_bytes()
    n_code_cells = sum(cell["cell_type"] == "code" for cell in json.loads(on_disk)["cells"])
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script(COUNT_PROGRESS_BARS)
    try:
        start = time.monotonic()
        page.goto(f"{lab.url}/lab/tree/{chapter}?reset&token={lab.token}")
        try:
            _run_all_cells(page, n_code_cells, RUN_TIMEOUT_S)
        except Exception:
            page.screenshot(path=SCREENSHOTS / f"{shots}-failed.png")
            pytest.fail(f"{chapter}: the cells did not all run within {RUN_TIMEOUT_S} s; Lab's dialogs: "
                        f"{page.locator('.jp-Dialog').all_inner_texts()}; the page: {shots}-failed.png")
        print(f"\n{chapter}: loaded and ran all cells in {time.monotonic() - start:.1f} s")
        _full_page_screenshot(page, SCREENSHOTS / f"{shots}.png")
        _check_page(page, chapter, n_code_cells)
        if chapter.endswith("02_noise_schedule.ipynb"):
            _check_explorer(page, shots)
    finally:
        context.close()
        try:  # free the kernel's memory for the next chapter
            for session in lab.api("GET", "/api/sessions"):
                lab.api("DELETE", f"/api/sessions/{session['id']}")
        except OSError as err:  # the server is gone: the fixture's teardown says so, this must not hide the cause
            print(f"could not shut the kernel down: {err}")
    assert (NOTEBOOKS / chapter).read_bytes() == on_disk, f"{chapter}: the browser run changed the file on disk"


def _check_page(page: Page, chapter: str, n_code_cells: int) -> None:
    """What the learner sees after Run All: every cell ran, no traceback, no stderr, widgets drawn as widgets."""
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    assert not dialogs, f"{chapter}: Lab shows a dialog: {dialogs}"
    # Lab 4 draws a traceback as an output of type stderr too (checked on a failing cell).
    stderr = _outputs(page, "application/vnd.jupyter.stderr") + _outputs(page, "application/vnd.jupyter.error")
    tracebacks = [t for t in stderr if "Traceback" in t or "Error" in t.partition("\n")[0]]
    assert not tracebacks, f"{chapter}: a cell failed:\n" + "\n---\n".join(tracebacks)
    # Any other stderr fails too: these chapters write none, so it is a warning of the machinery (kernel,
    # Jupyter, a library) or a tqdm bar that fell back to text.
    assert not stderr, f"{chapter}: a cell shows stderr:\n" + "\n---\n".join(stderr)
    prompts = page.evaluate(f"() => {PROMPTS}")
    # A collapsed "checks" cell (source_hidden) draws no input prompt; a failure there shows as a traceback above.
    cells = [c for c in json.loads((NOTEBOOKS / chapter).read_text())["cells"] if c["cell_type"] == "code"]
    hidden = {i for i, c in enumerate(cells) if c["metadata"].get("jupyter", {}).get("source_hidden")}
    unrun = [i for i, p in enumerate(prompts) if i not in hidden and not p.strip("[]:").isdigit()]
    assert len(prompts) == n_code_cells and not unrun, f"{chapter}: code cells {unrun} did not run: {prompts}"
    if chapter.removeprefix("zh/") not in NO_PROGRESS_BARS:  # the widget manager draws tqdm's bars as widgets
        assert page.evaluate("() => window.__progressBars") > 0, f"{chapter}: no tqdm bar was drawn as a widget"
    plain = _outputs(page, "text/plain") + _outputs(page, "application/vnd.jupyter.stdout")
    as_text = [t for t in plain if t.startswith(("VBox(", "HBox(", "FloatProgress(", "IntProgress(", "Loading widget"))]
    assert not as_text, f"{chapter}: widgets shown as text, the widget manager is not working: {as_text}"


def _attachment_alts(chapter: str) -> list[str]:
    """The alt text of every diagram a chapter's markdown shows from a cell attachment."""
    cells = json.loads((NOTEBOOKS / chapter).read_text(encoding="utf-8"))["cells"]
    return [alt for c in cells if c["cell_type"] == "markdown"
            for alt in re.findall(r"!\[([^\]]*)\]\(attachment:", "".join(c["source"]))]


def _loaded(page: Page, selector: str, expected: int, timeout_s: float = 60) -> list[dict]:
    """The images matching ``selector`` once ``expected`` of them have loaded (or what there is at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        images = [i for i in page.evaluate(LOADED_IMAGES, selector) if not i["web"]]  # not the Colab badge
        if sum(i["complete"] and i["width"] > 0 for i in images) >= expected or time.monotonic() > deadline:
            return images
        time.sleep(0.5)


@pytest.mark.parametrize("chapter", DIAGRAM_CHAPTERS)
def test_every_diagram_shows_in_lab_and_in_the_course_html(lab: Lab, browser: Browser, chapter: str,
                                                           tmp_path: Path) -> None:
    """Each diagram stored as a cell attachment is drawn, at its size, by JupyterLab (no cell run) and in the
    HTML page `make course` writes (run_course's exporter, which Colab's and GitHub's viewers resemble: the
    .ipynb alone); element screenshots go to build/screenshots/diagrams/ to be looked at."""
    alts = _attachment_alts(chapter)
    assert alts, f"{chapter}: no diagram found"
    shots = SCREENSHOTS / "diagrams"
    shots.mkdir(parents=True, exist_ok=True)
    name = chapter.removesuffix(".ipynb").replace("/", "_")
    html = write_html(nbformat.read(NOTEBOOKS / chapter, as_version=4), tmp_path / f"{name}.html")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        for where, url, selector in (
                ("lab", f"{lab.url}/lab/tree/{chapter}?reset&token={lab.token}", f"{NOTEBOOK} .jp-MarkdownCell img"),
                ("html", html.as_uri(), "img")):
            page.goto(url)
            images = _loaded(page, selector, len(alts))
            drawn = [i["alt"] for i in images if i["complete"] and i["width"] > 0]
            assert len(drawn) == len(images) == len(alts), \
                f"{chapter} in {where}: {len(drawn)} of {len(alts)} diagrams drawn: {images}"
            for k, img in enumerate(page.locator(selector).all()):
                if not (img.get_attribute("src") or "").startswith(("http:", "https:")):
                    img.scroll_into_view_if_needed()
                    img.screenshot(path=shots / f"{name}-{k}-{where}.png")
    finally:
        context.close()
