"""The offline classroom kit: a fresh environment installed from the wheelhouse alone runs chapter 1.

Slow (several minutes: a 3 GB install), so `make test` skips it; `make test-wheelhouse` downloads the wheelhouse
if needed (`make wheelhouse`) and runs it. The install runs `make install` into a new venv with no network at
all (a network namespace of its own, where only the loopback that Jupyter's kernel needs is up), pip's own
configuration files (which may add indexes or find-links on this machine) switched off, and a package index that
does not exist: only wheelhouse/ can supply a wheel.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(os.environ.get("WHEELHOUSE", ROOT / "wheelhouse")).resolve()
CHAPTER = "01_diffusion_from_scratch.ipynb"

pytestmark = pytest.mark.slow


def no_network() -> list[str]:
    """A command prefix that runs a command in a network namespace with no network (root or not)."""
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    pytest.fail("cannot cut the network (unshare --net failed): the test would not prove the install is offline")


def test_a_fresh_venv_from_the_wheelhouse_alone_runs_chapter_1(tmp_path):
    assert (WHEELHOUSE / ".complete").is_file(), f"no complete wheelhouse in {WHEELHOUSE}: run make wheelhouse"
    venv, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PIP_CONFIG_FILE": os.devnull,  # no /etc/pip.conf, no ~/.config/pip: no find-links or index from there
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens there, should --no-index ever be lost
        "PIP_NO_CACHE_DIR": "1",
        "COURSE_DATA_DIR": str(tmp_path / "course-data"),
        "MPLBACKEND": "Agg",
    }
    python = getattr(sys, "_base_executable", sys.executable)  # the interpreter this venv was made from
    install = f"make -C {shlex.quote(str(ROOT))} install VENV={venv} PYTHON={python} WHEELHOUSE={WHEELHOUSE}"
    chapter = (f"{venv}/bin/python -m course_tools.run_course --profile small --out {tmp_path / 'build'} "
               f"{ROOT / 'notebooks' / CHAPTER}")
    probe = (f"echo PIP CONFIG:; {venv}/bin/pip config list; echo END PIP CONFIG; {venv}/bin/python -c 'import socket; "
             "socket.create_connection((\"pypi.org\", 443), 3)' 2>/dev/null && echo NETWORK REACHABLE; true")
    script = f"ip link set lo up && {install} && {probe} && {chapter}"
    start = time.perf_counter()
    result = subprocess.run([*no_network(), "sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    print(f"install from {WHEELHOUSE} and chapter 1 in small: {seconds:.0f} s\n{log[-3000:]}")
    assert result.returncode == 0, f"the offline install or chapter 1 failed:\n{log[-6000:]}"
    assert "installing from" in log and "alone (no package index)" in log, "make install did not use the wheelhouse"
    assert "NETWORK REACHABLE" not in log, "the network namespace let a connection out"
    config = log.split("PIP CONFIG:")[1].split("END PIP CONFIG")[0]  # what pip reads, besides the command line
    assert "find-links" not in config and "extra-index-url" not in config, f"pip still reads settings:\n{config}"

    timings = json.loads((tmp_path / "build" / "timings-small.json").read_text())
    assert [r["notebook"] for r in timings["results"]] == [CHAPTER] and timings["results"][0]["error"] is None
    executed = json.loads((tmp_path / "build" / CHAPTER).read_text())
    images = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]
              if "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"chapter 1 drew {len(images)} figures; expected its data, corruption, loss, samples"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch, diffusers; print(torch.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), f"torch imported from {where}, not from the new venv"
