"""Keep the Chinese edition (notebooks/zh/) in step with the English chapters (notebooks/).

A twin has its English chapter's cells, in the same order and with the same ids. Code cells are copied
from the English notebook byte for byte, so never edit them in a twin: edit the English chapter and run
this script. Markdown cells keep their Chinese text, matched to the English cell by id.

    python notebooks/zh/sync.py          # rewrite every twin from its English chapter (creates missing ones)
    python notebooks/zh/sync.py 03_training_butterflies   # only the chapters named
    python notebooks/zh/sync.py --check  # write nothing; exit 1 if a twin is out of step

A markdown cell the twin does not have yet (a new chapter, a new paragraph) is copied in English and listed
as "to translate". Each translated cell records short hashes of the English text it translates and of its
own text (cell metadata "translation"); when the English text changes and the Chinese does not, the cell is
listed as "to update". Translate it, run the script again, and it is marked current.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
import sys
from pathlib import Path

import nbformat

ZH = Path(__file__).resolve().parent
EN = ZH.parent
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _hash(text: str) -> str:
    """A short, stable fingerprint of a cell's text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def build_twin(
    english: nbformat.NotebookNode, twin: nbformat.NotebookNode | None
) -> tuple[nbformat.NotebookNode, dict[str, list[str]]]:
    """The twin rebuilt from its English chapter; and the cell ids to translate, to update and dropped."""
    old = {c.id: c for c in twin.cells if c.cell_type == "markdown"} if twin is not None else {}
    report: dict[str, list[str]] = {"to translate": [], "to update": [], "dropped": []}
    result = copy.deepcopy(english)
    for i, cell in enumerate(result.cells):
        if cell.cell_type != "markdown":
            continue  # code (and raw) cells stay exactly as in English
        zh = old.get(cell.id)
        if zh is None or not CHINESE.search(zh.source):
            if zh is not None:
                cell.source = zh.source  # keep a translator's work in progress
            report["to translate"].append(cell.id)
            continue
        record = zh.metadata.get("translation")
        en_hash, zh_hash = _hash(cell.source), _hash(zh.source)
        if record is None or record.get("zh") != zh_hash:
            record = {"en": en_hash, "zh": zh_hash}  # (re)translated since the last run: current
        elif record.get("en") != en_hash:
            report["to update"].append(cell.id)
        result.cells[i] = nbformat.v4.new_markdown_cell(
            zh.source, id=cell.id, metadata={**copy.deepcopy(cell.metadata), "translation": dict(record)}
        )
        if "attachments" in zh:  # its diagrams (images/embed.py writes them)
            result.cells[i].attachments = copy.deepcopy(zh.attachments)
    kept = {c.id for c in result.cells}
    report["dropped"] = [cell_id for cell_id in old if cell_id not in kept]
    return result, report


def sync(check: bool = False, chapters: list[str] | None = None) -> int:
    """Rebuild (or, with check, only compare) the twins; print what needs a translator; return an exit code."""
    paths = sorted(EN.glob("[0-9]*.ipynb"))
    if chapters:
        names = {Path(c).stem for c in chapters}
        unknown = names - {p.stem for p in paths}
        if unknown:
            print(f"no English chapter named {', '.join(sorted(unknown))} in {EN}")
            return 2
        paths = [p for p in paths if p.stem in names]
    out_of_step = []
    for path in paths:
        english = nbformat.read(path, as_version=4)
        twin_path = ZH / path.name
        twin = nbformat.read(twin_path, as_version=4) if twin_path.exists() else None
        rebuilt, report = build_twin(english, twin)
        text = nbformat.writes(rebuilt) + "\n"
        if not twin_path.exists() or twin_path.read_text(encoding="utf-8") != text:
            out_of_step.append(twin_path.name)
            if not check:
                sys.path.insert(0, str(ZH.parents[1]))  # the repository's course_utils, as images/embed.py finds it
                from course_utils.files import write_text_atomic

                write_text_atomic(twin_path, text)
        for what, ids in report.items():
            if ids:
                print(f"{twin_path.name}: {what}: {', '.join(ids)}")
    if check and out_of_step:
        print(f"out of step with their English chapters: {', '.join(out_of_step)}; run python notebooks/zh/sync.py")
        return 1
    if not check:
        print(f"rewrote {len(out_of_step)} twin(s)" + (f": {', '.join(out_of_step)}" if out_of_step else ""))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter names, e.g. 03_training_butterflies (default: all)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a twin is out of step")
    args = parser.parse_args()
    sys.exit(sync(args.check, args.chapters))
