"""Execute the course's notebooks in a profile; write executed copies, HTML pages and timings to a folder.

python -m course_tools.run_course --profile cpu --out build
python -m course_tools.run_course --profile cpu --record benchmarks/results   # also update the committed times
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

from course_utils import references
from course_utils.cli import INT, Parser, errors, parse
from course_utils.config import PROFILES
from course_utils.files import write_text_atomic


def run_notebook(path: Path, out: Path, timeout: int | None = None) -> tuple[float, str | None]:
    """Execute one notebook in its own folder; save it and its HTML to ``out``; return (seconds, error)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = None
    try:
        ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(path.parent)}}
        )
    except CellExecutionError as err:
        error = str(err).strip().splitlines()[-1] if str(err).strip() else "cell failed"
    except CellTimeoutError:
        error = f"a cell ran longer than --timeout {timeout} s; raise --timeout or leave it out (no limit)"
    except DeadKernelError:
        error = "the kernel died (out of memory?); try a smaller --profile"
    seconds = time.perf_counter() - start
    write_text_atomic(out / path.name, nbformat.writes(nb))
    write_html(nb, out / f"{path.stem}.html")
    return seconds, error


def write_html(nb: nbformat.NotebookNode, file: Path) -> Path:
    """The notebook as the HTML page the course's runs write (nbconvert's ``HTMLExporter``; diagrams stored as
    cell attachments are embedded in the page)."""
    html, _ = HTMLExporter().from_notebook_node(nb)
    write_text_atomic(file, html)
    return file


def machine() -> str:
    """This machine in a few words: architecture, cores, memory, Python and torch versions."""
    import torch

    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        memory = ""
    return (f"{platform.machine()}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, "
            f"torch {torch.__version__.split('+')[0]}")


def update_record(file: Path, record: dict) -> dict:
    """Put each notebook of ``record`` that ran without error into the committed ``file`` (its seconds, date,
    device, machine and load), keeping the other notebooks' entries; return the updated record."""
    kept = json.loads(file.read_text()) if file.is_file() else {"profile": record["profile"], "notebooks": {}}
    for r in record["results"]:
        if r["error"] is None:
            kept["notebooks"][r["notebook"]] = {
                "seconds": r["seconds"], "date": record["date"], "device": record["device"],
                "machine": record["machine"], "load": r["load"], "source": "course_tools.run_course --record"}
    kept["notebooks"] = dict(sorted(kept["notebooks"].items()))
    write_text_atomic(file, json.dumps(kept, indent=1, ensure_ascii=False) + "\n")
    return kept


def build_parser() -> Parser:
    """The runner's command line: notebooks, --profile, --out, --timeout, --record."""
    parser = Parser(prog="python -m course_tools.run_course", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--profile", choices=PROFILES, help="COURSE_PROFILE for the run (default: as set, or auto)")
    parser.add_argument("--out", type=Path, default=Path("build"), help="output folder (default: build)")
    parser.add_argument("--timeout", type=INT, default=None,
                        check=(lambda v: v >= 1, "a whole number of seconds, at least 1 (or "
                                                 "leave it out for no limit)"),
                        help="seconds allowed per cell (default: no limit)")
    parser.add_argument("--record", type=Path, default=None, metavar="FOLDER",
                        help="also write each notebook that ran cleanly into FOLDER/timings-<profile>.json, the "
                             "committed record the README's times come from (benchmarks/results)")
    return parser


def check_inputs(args: argparse.Namespace) -> list[str]:
    """Every problem with the command line, one ``error:`` line each (none: the notebooks can run); writes nothing."""
    problems = list(args.parse_problems)
    if args.profile is None and os.environ.get("COURSE_PROFILE", "").strip().lower() not in ("", *PROFILES):
        problems.append(f"COURSE_PROFILE={os.environ['COURSE_PROFILE']!r} is not a profile; set it to one of "
                        f"{', '.join(PROFILES)}, unset it, or pass --profile")
    for path in args.notebooks:
        if not path.exists():
            problems.append(f"notebook {path}: no such file; check the name (ls notebooks/)")
        elif path.suffix != ".ipynb" or not path.is_file():
            problems.append(f"notebook {path}: not a .ipynb file; name notebook files")
        else:
            try:
                nbformat.read(path, as_version=4)
            except Exception as err:
                problems.append(f"notebook {path}: not a readable notebook ({type(err).__name__}); check the file")
    if args.record is not None and not args.record.is_dir():
        problems.append(f"--record {args.record}: not a folder; pass the folder that holds timings-<profile>.json "
                        "(benchmarks/results)")
    out = args.out.expanduser()
    if out.exists() and not out.is_dir():
        problems.append(f"--out {args.out}: a file, not a folder; choose a folder name")
    else:
        existing = next(p for p in [out, *out.absolute().parents] if p.exists())
        if not existing.is_dir():
            problems.append(f"--out {args.out}: {existing} is a file, so no folder can be made inside it")
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"--out {args.out}: cannot write in {existing} (permission denied or read-only); "
                            "choose a folder you can write to")
        sources = {p.resolve().parent for p in args.notebooks if p.is_file()}
        if out.resolve() in sources:
            problems.append(f"--out {args.out}: the notebooks' own folder, so the executed copies would replace "
                            "them; choose another folder (e.g. build)")
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        problems.append("no 'python3' Jupyter kernel: pip install ipykernel (make install does)")
    return errors(problems)


def main(argv: list[str] | None = None) -> int:
    """Check the command line, run the notebooks named (default: all in notebooks/), print a table of times."""
    parser = build_parser()
    args, args.parse_problems = parse(parser, argv)

    args.notebooks = args.notebooks or sorted(Path("notebooks").glob("[0-9]*.ipynb"))
    problems = check_inputs(args)
    if not args.notebooks:
        problems.insert(0, f"error: no notebooks found in {Path.cwd() / 'notebooks'}: run from the repository "
                           "root or name them")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.profile:
        os.environ["COURSE_PROFILE"] = args.profile
    from course_utils.config import get_device, get_profile

    profile = get_profile()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.record is not None:  # the chapters' compare(...) calls store their values as the course's references
        os.environ[references.RECORD] = "1"
    results = []
    for path in args.notebooks:
        print(f"running {path} (profile {profile}) ...", flush=True)
        load = os.getloadavg()[0]
        seconds, error = run_notebook(path.resolve(), args.out, args.timeout)
        # the 1-minute load average before and after: other work on the machine inflates a time
        results.append({"notebook": path.name, "seconds": round(seconds, 1), "error": error,
                        "load": [round(load, 2), round(os.getloadavg()[0], 2)]})
        print(f"  {'FAILED: ' + error if error else 'ok'} in {seconds:.1f} s", flush=True)
    record = {
        "profile": profile,
        "device": str(get_device()),
        "machine": machine(),
        "date": date.today().isoformat(),
        "results": results,
    }
    write_text_atomic(args.out / f"timings-{profile}.json", json.dumps(record, indent=2))
    if args.record is not None:
        update_record(args.record / f"timings-{profile}.json", record)
    print(f"\n| notebook | {profile} profile, {record['device']} |\n|---|---|")
    for r in results:
        print(f"| {r['notebook']} | {r['seconds']:.0f} s{' (failed)' if r['error'] else ''} |")
    print(f"\nexecuted notebooks and HTML pages are in {args.out}/")
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("error: interrupted; the notebooks finished so far are in --out")
