"""The course's generated tables, written from the records that hold their numbers (never typed by hand).

    python -m course_tools.readme_tables           # rewrite every generated table (the files in FILES)
    python -m course_tools.readme_tables --check   # exit 1 and name the stale tables (tests/test_readme.py)

Four tables, each between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``:
``models`` (docs/pretrained.md) from each shipped pipeline's ``training.json`` and ``scores.json``
(``course_utils/pretrained/*/``), ``timings`` (docs/measurements.md, TEACHING.md) from
``benchmarks/results/timings-<profile>.json`` (``run_course --record`` updates them) for every
``notebooks/*.ipynb``, ``benchmarks`` (docs/measurements.md, benchmarks/README.md) from each ``benchmarks/*.py``
and its records in ``benchmarks/results/``, and ``results`` (docs/chapter-results.md) from
``course_utils/references.json``: the numbers the chapters print beside yours. A table's links are written
relative to the file that holds it.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

from course_utils import pretrained
from course_utils.config import PROFILES
from course_utils.files import write_text_atomic

from .pretrained import cards

ROOT = Path(__file__).resolve().parents[1]
READMES = {"README.md": "en", "README.zh-CN.md": "zh"}
# every file with generated tables, and its language; HOMES says which tables each one holds
HOMES = {"docs/pretrained.md": ["models"], "docs/zh/pretrained.md": ["models"],
         "docs/measurements.md": ["timings", "site", "benchmarks"],
         "docs/zh/measurements.md": ["timings", "site", "benchmarks"],
         "TEACHING.md": ["timings"], "TEACHING.zh-CN.md": ["timings"], "benchmarks/README.md": ["benchmarks"],
         "docs/chapter-results.md": ["results"]}
FILES = {name: "zh" if "/zh/" in name or name.endswith(".zh-CN.md") else "en" for name in HOMES}
NOTE_ESTIMATE = "estimate: FLOPs counted from each chapter's settings, as minutes on a free Colab T4, not measured"
# The Chinese pages' words for the tables' fixed words; the cells themselves (from English records) stay English.
ZH = {"model": "模型", "what": "内容", "parameters": "参数量", "training": "训练", "size": "大小",
      "quality": "质量（样本数与采样器见模型卡片）", "notebook": "notebook", "not measured": "未测",
      "script": "脚本", "measures": "测量什么", "records": "记录（日期）", "device": "设备",
      "no record": "无记录（只打印表格）", "together": "合计", "load": "负载", "about": "约",
      "under 1 min": "不到 1 min", "built from": "来源", "pages": "页数", "build time": "构建用时",
      "chapters shown without outputs": "未带输出显示的章节", "measured": "测量于", "none": "无",
      "run": "运行",
      "`full` on a T4 (estimate)": "`full` 在 T4 上（估计）",
      NOTE_ESTIMATE: "估计：按各章设置数出 FLOPs，换算成免费 Colab T4 上的分钟数，不是实测"}
BLOCK = re.compile(r"(<!-- generated: (\w+)[^>]*-->\n)(.*?)(<!-- end generated: \2 -->)", re.S)
LINK = re.compile(r"\]\((?![a-z]+://)([^)\s]+)\)")


def _word(text: str, lang: str) -> str:
    """``text`` in the page's language."""
    return ZH.get(text, text) if lang == "zh" else text


def _row(cells: list[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]], lang: str) -> list[str]:
    """A Markdown table with its header in the page's language."""
    return [_row([_word(h, lang) for h in header]), "|" + "---|" * len(header), *map(_row, rows)]


def _millions(n: int) -> str:
    """A parameter count in millions."""
    return f"{n / 1e6:.2f} M"


def _parameters(value: int | dict) -> str:
    """A pipeline's parameter count, part by part when it has several models."""
    if isinstance(value, dict):
        return f"{_millions(sum(value.values()))} ({', '.join(f'{k} {_millions(v)}' for k, v in value.items())})"
    return _millions(value)


def _training(record: dict) -> str:
    """Steps, time, device and date of the run that made a pipeline (its ``training.json``)."""
    steps = f"{record['steps']:,} steps"
    if record.get("vae_steps"):
        steps = f"{record['vae_steps']:,} VAE steps, then {steps}"
    if record.get("seconds"):
        speed = f" ({record['steps'] / record['seconds']:.1f} steps/s)" if not record.get("vae_steps") else ""
        steps += f" in {record['seconds'] / 60:.1f} min{speed}"
    return f"{steps} on {record['device']}, {record['date']}"


def _scores(row: dict) -> str:
    """A row of a card's scores, as the card's own table writes each number."""
    return ", ".join(f"{k} {cards.cell(v, k)}" for k, v in row.items() if not isinstance(v, dict))


def _quality(scores: dict) -> str:
    """Every sample row of a pipeline's ``scores.json``, then the reference rows (real images, noise) by Frechet."""
    samples = {k: v for k, v in scores["rows"].items() if k.startswith("samples")}
    others = {k: v for k, v in scores["rows"].items() if k not in samples}
    lines = [f"{label}: {_scores(row)}" for label, row in samples.items()]
    refs = [f"{label} {cards.cell(row['frechet'])}" for label, row in others.items() if "frechet" in row]
    if refs:
        lines.append("frechet of " + ", ".join(refs))
    how = ", ".join(str(x) for x in (f"{scores['n']} images" if "n" in scores else None, scores.get("sampler")) if x)
    return (f"{how}: " if how else "") + "<br>".join(lines)


def _control_quality(scores: dict) -> str:
    """A ControlNet's ``scores.json``: silhouette IoU and wings read as captioned, each ± its bootstrap spread."""
    how = f"{scores['n']} held-out controls, guidance {scores['guidance']:g}, {scores['steps']} DDIM steps"
    rows = [f"{label}: IoU {row['iou']:.2f} ± {row['iou_spread']:.2f}, wings as captioned {row['wing']:.0%}"
            for label, row in scores["rows"].items()]
    return f"{how}: " + "<br>".join(rows)


def _size(folder: Path) -> float:
    """The folder's files in MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def models_table(lang: str = "en") -> list[str]:
    """One row per shipped pipeline (``pretrained.NAMES``, then ``CONTROLS``), from its ``training.json`` and
    ``scores.json``."""
    rows = []
    for name in pretrained.NAMES:
        folder = pretrained.path(name)
        record = json.loads((folder / "training.json").read_text())
        scores = json.loads((folder / "scores.json").read_text())
        parameters = _parameters(record["parameters"]) if "parameters" in record else ""
        rows.append([f"[`{name}`](course_utils/pretrained/{name}/README.md)", record.get("description", ""),
                     parameters, _training(record), f"{_size(folder):.1f} MB", _quality(scores)])
    for name, entry in pretrained.CONTROLS.items():  # a ControlNet or depth U-Net for a shipped text-to-image pipeline
        folder = pretrained.path(name)
        record = json.loads((folder / "training.json").read_text())
        scores = json.loads((folder / "scores.json").read_text())
        rows.append([f"[`{name}`](course_utils/pretrained/{name}/README.md)", entry["description"],
                     _parameters(record["parameters"]), _training(record), f"{_size(folder):.1f} MB",
                     _control_quality(scores)])
    total = sum(_size(pretrained.path(name)) for name in (*pretrained.NAMES, *pretrained.CONTROLS))
    rows.append([f"**{_word('together', lang)}**", "", "", "", f"**{total:.1f} MB**", ""])
    return _table(["model", "what", "parameters", "training", "size", "quality"], rows, lang)


def _duration(seconds: float) -> str:
    """Seconds as the pages write a time: ``53 s``, ``3 min 41 s``."""
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def timing_records() -> dict[str, dict]:
    """The committed ``timings-<profile>.json`` of each profile (empty where none exists)."""
    records = {}
    for profile in PROFILES:
        file = ROOT / "benchmarks" / "results" / f"timings-{profile}.json"
        records[profile] = json.loads(file.read_text())["notebooks"] if file.is_file() else {}
    return records


def full_estimate() -> dict | None:
    """The newest ``full_profile_cost-full-*.json``: each chapter's estimated ``full`` minutes per GPU, or None."""
    files = sorted((ROOT / "benchmarks" / "results").glob("full_profile_cost-full-*.json"))
    return json.loads(files[-1].read_text()) if files else None


def timings_table(lang: str = "en") -> list[str]:
    """One row per chapter notebook (``notebooks/*.ipynb``), one column per profile, each time with its date
    (and the load average, where it was recorded), and the ``full`` profile's estimated minutes on a free Colab
    T4 (``benchmarks/full_profile_cost.py``); then the machines the times were taken on."""
    records = timing_records()
    estimate = full_estimate()
    rows, machines = [], {}
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        cells = [path.stem]
        for profile in PROFILES:
            entry = records[profile].get(path.name)
            if entry is None:
                cells.append(_word("not measured", lang))
                continue
            load = f", {_word('load', lang)} {max(entry['load']):.1f}" if entry.get("load") else ""
            cells.append(f"{_duration(entry['seconds'])} ({entry['date']}{load})")
            machines.setdefault(profile, set()).add(f"{entry['machine']} ({entry['device']})")
        if estimate is not None:
            minutes = estimate["chapters"].get(path.stem, {}).get("minutes", {}).get("T4")
            about = f"{_word('about', lang)} {minutes:.0f} min" if minutes is not None and minutes >= 0.5 else None
            cells.append("" if minutes is None else about or _word("under 1 min", lang))
        rows.append(cells)
    header = ["notebook", *(f"`{p}`" for p in PROFILES)] + (["`full` on a T4 (estimate)"] if estimate else [])
    lines = _table(header, rows, lang) + [""] + [f"- `{p}`: {'; '.join(sorted(m))}" for p, m in machines.items()]
    if estimate is not None:
        lines.append(f"- {_word(NOTE_ESTIMATE, lang)}: [`full_profile_cost.py`](benchmarks/full_profile_cost.py) "
                     f"({estimate['date']})")
    return lines


def _purpose(script: Path) -> str:
    """The first line of a script's docstring."""
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def benchmarks_table(lang: str = "en") -> list[str]:
    """One row per benchmark script: what it measures, and the records in ``benchmarks/results/`` (how many, their
    dates and devices)."""
    rows = []
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        records = [json.loads(f.read_text()) for f in (ROOT / "benchmarks" / "results").glob(f"{script.stem}-*.json")]
        dates = ", ".join(sorted({r.get("date", "?") for r in records}))
        devices = "; ".join(sorted({r.get("device", "?") for r in records}))
        found = f"{len(records)} ({dates})" if records else _word("no record", lang)
        rows.append([f"[`{script.name}`](benchmarks/{script.name})", _purpose(script), found, devices])
    return _table(["script", "measures", "records", "device"], rows, lang)


def results_table(lang: str = "en") -> list[str]:
    """One row per number a chapter prints beside the course's own (``references.compare``): the value the
    course's recording run measured in each profile, ± its bootstrap spread, and the date of that run."""
    from course_utils.references import FILE, _number

    table = json.loads(FILE.read_text(encoding="utf-8")) if FILE.is_file() else {}
    keys = sorted({key for entries in table.values() for key in entries},
                  key=lambda k: (int(m.group(1)) if (m := re.match(r"ch(\d+)", k)) else 99, k))
    profiles = [p for p in PROFILES if table.get(p)]
    rows = []
    for key in keys:
        chapter, _, what = key.partition(": ")
        cells = [chapter, what]
        for profile in profiles:
            entry = table[profile].get(key)
            cells.append(f"{_number(entry['value'], entry.get('spread'), 3)} ({entry['date']})" if entry else "")
        rows.append(cells)
    return _table(["chapter", "measure", *(f"`{p}`" for p in profiles)], rows, lang)


def site_table(lang: str = "en") -> list[str]:
    """The website ``make site`` builds from a ``cpu`` run (``benchmarks/results/site-cpu.json``, written by
    ``python -m course_tools.site --record``): its pages, size and build time, and any chapter the run lacked."""
    file = ROOT / "benchmarks" / "results" / "site-cpu.json"
    if not file.is_file():
        return [_word("no record", lang)]
    r = json.loads(file.read_text())
    missing = ", ".join(name.split("_")[0] for name in r["chapters_without_outputs"]) or _word("none", lang)
    load = f", {_word('load', lang)} {max(r['load']):.1f}" if r.get("load") else ""
    row = [f"`{r.get('profile') or 'cpu'}` {_word('run', lang)}", str(r["pages"]), f"{r['megabytes']:.1f} MB",
           _duration(r["seconds"]), missing, f"{r['date']}, {r['machine']}{load}"]
    return _table(["built from", "pages", "size", "build time", "chapters shown without outputs", "measured"],
                  [row], lang)


TABLES = {"models": models_table, "site": site_table, "timings": timings_table, "benchmarks": benchmarks_table,
          "results": results_table}


def _up(name: str) -> str:
    """The way from file ``name`` (relative to the repository root) back to the root: ``""``, ``"../"``, ..."""
    return "../" * (len(Path(name).parts) - 1)


def render(text: str, lang: str, up: str = "") -> str:
    """``text`` with every generated block rewritten from the records; ``up`` leads from the file to the root,
    and goes before every relative link (the tables write them from the root)."""
    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise KeyError(f"<!-- generated: {name} -->: no such table; use one of {', '.join(TABLES)}")
        body = LINK.sub(lambda m: f"]({up}{m.group(1)})", "\n".join(TABLES[name](lang)))
        return match.group(1) + body + "\n" + match.group(4)

    return BLOCK.sub(block, text)


def stale(root: Path = ROOT) -> list[str]:
    """The generated blocks of each file that differ from their records, as ``TEACHING.md: timings``."""
    problems = []
    for name, lang in FILES.items():
        text = (root / name).read_text(encoding="utf-8")
        fresh = dict((m.group(2), m.group(3)) for m in BLOCK.finditer(render(text, lang, _up(name))))
        problems += [f"{name}: {table}" for table, body in ((m.group(2), m.group(3)) for m in BLOCK.finditer(text))
                     if fresh[table] != body]
    return problems


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated tables (or, with ``--check``, list the stale ones and exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m course_tools.readme_tables", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for p in problems:
            print(f"error: {p} differs from its records; run python -m course_tools.readme_tables", file=sys.stderr)
        return 1 if problems else 0
    for name, lang in FILES.items():
        file = ROOT / name
        text = file.read_text(encoding="utf-8")
        if (fresh := render(text, lang, _up(name))) != text:
            write_text_atomic(file, fresh)
            print(f"updated {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
