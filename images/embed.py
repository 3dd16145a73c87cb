"""Embed the course's diagrams in the notebooks as cell attachments, so they render without the images/ folder.

A markdown cell shows a diagram with ``![what it shows](attachment:ddim_step.png)``; this script stores
``images/ddim_step.png`` in that cell's ``attachments`` (JupyterLab, Colab and nbconvert's HTML read them from the
notebook itself, which is all Colab opens). Run it after drawing (``python images/draw_diagrams.py``) or after
adding a reference; ``--check`` exits 1, naming each cell, when an attachment is missing or differs from its file.

    python images/embed.py [--check]
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCE = re.compile(r"\(attachment:([\w.-]+\.png)\)")


def attachments_for(source: str) -> dict:
    """The attachments a markdown cell's text refers to, each read from images/ (a missing file is an error)."""
    found = {}
    for name in REFERENCE.findall(source):
        path = HERE / name
        if not path.is_file():
            raise FileNotFoundError(f"a cell refers to attachment:{name} but {path} does not exist: draw it "
                                    "(python images/draw_diagrams.py) or fix the name")
        found[name] = {"image/png": base64.b64encode(path.read_bytes()).decode("ascii")}
    return found


def embed(notebook: Path, check: bool = False) -> list[str]:
    """Bring ``notebook``'s attachments in line with images/; return one line per cell that was (or is) off."""
    from course_utils.files import write_text_atomic

    nb = nbformat.read(notebook, as_version=4)
    off = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        wanted = attachments_for("".join(cell["source"]))
        if dict(cell.get("attachments", {})) != wanted:
            off.append(f"{notebook.relative_to(ROOT)}: cell {index} should carry {sorted(wanted) or 'no attachments'}")
            if wanted:
                cell.attachments = nbformat.from_dict(wanted)
            else:
                cell.pop("attachments", None)
    if off and not check:
        write_text_atomic(notebook, nbformat.writes(nb) + "\n")
    return off


def main(argv: list[str] | None = None) -> int:
    """Embed (or, with --check, only compare) the attachments of every chapter notebook in both editions."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an attachment is off")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    notebooks = [nb for nb in sorted((ROOT / "notebooks").glob("**/*.ipynb")) if ".ipynb_checkpoints" not in nb.parts]
    off = [line for nb in notebooks for line in embed(nb, args.check)]
    for line in off:
        print(("out of date: " if args.check else "embedded: ") + line)
    return 1 if off and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
