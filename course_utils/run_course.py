"""Execute the course's notebooks in a profile; write executed copies, HTML pages and timings to a folder.

python -m course_utils.run_course --profile cpu --out build
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

from .config import PROFILES


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_notebook(path: Path, out: Path, timeout: int | None = None) -> tuple[float, str | None]:
    """Execute one notebook in its own folder; save it and its HTML to ``out``; return (seconds, error)."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = None
    try:
        ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(path.parent)}}
        )
    except CellExecutionError as err:
        error = str(err).strip().splitlines()[-1] if str(err).strip() else "cell failed"
    seconds = time.perf_counter() - start
    _write_atomic(out / path.name, nbformat.writes(nb))
    html, _ = HTMLExporter().from_notebook_node(nb)
    _write_atomic(out / f"{path.stem}.html", html)
    return seconds, error


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks named (default: all in notebooks/) and print a table of times."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--profile", choices=PROFILES, help="COURSE_PROFILE for the run (default: as set, or auto)")
    parser.add_argument("--out", type=Path, default=Path("build"), help="output folder (default: build)")
    parser.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or sorted(Path("notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        parser.error("no notebooks found: run from the repository root or name them")
    if args.profile:
        os.environ["COURSE_PROFILE"] = args.profile
    from .config import get_device, get_profile

    profile = get_profile()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in notebooks:
        print(f"running {path} (profile {profile}) ...", flush=True)
        seconds, error = run_notebook(path.resolve(), args.out, args.timeout)
        results.append({"notebook": path.name, "seconds": round(seconds, 1), "error": error})
        print(f"  {'FAILED: ' + error if error else 'ok'} in {seconds:.1f} s", flush=True)
    record = {
        "profile": profile,
        "device": str(get_device()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": date.today().isoformat(),
        "results": results,
    }
    _write_atomic(args.out / f"timings-{profile}.json", json.dumps(record, indent=2))
    print(f"\n| notebook | {profile} profile, {record['device']} |\n|---|---|")
    for r in results:
        print(f"| {r['notebook']} | {r['seconds']:.0f} s{' (failed)' if r['error'] else ''} |")
    print(f"\nexecuted notebooks and HTML pages are in {args.out}/")
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
