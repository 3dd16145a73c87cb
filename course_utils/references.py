"""The course's own results, per profile, printed beside the learner's: ``loss after 3 epochs: yours 0.071 · ...``.

A chapter cell calls ``compare(key, value)`` where the prose quotes a measured number. The reference values live
in ``references.json`` (one table per profile) and are written only by the run that measured them:
``python -m course_tools.run_course --profile cpu --record benchmarks/results`` sets ``COURSE_RECORD_REFERENCES``,
and each ``compare`` in that run stores its value (with the spread, date and notebook) for the profile.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

from .config import get_profile
from .files import write_text_atomic

FILE = Path(__file__).with_name("references.json")
RECORD = "COURSE_RECORD_REFERENCES"  # set by run_course --record


def _number(value: float, spread: float | None, digits: int) -> str:
    text = f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return text + (f" ± {spread:.{max(digits - 1, 1)}g}" if spread is not None else "")


def _table() -> dict:
    """The recorded references, one table per profile (empty before any recording run)."""
    return json.loads(FILE.read_text(encoding="utf-8")) if FILE.is_file() else {}


def reference(key: str, profile: str | None = None) -> dict | None:
    """The course's recorded result for ``key`` in ``profile`` (default: the active one), or None."""
    return _table().get(profile or get_profile(), {}).get(key)


def compare(key: str, value: float, spread: float | None = None, digits: int = 3) -> None:
    """Print the learner's ``value`` (± ``spread``) beside the course's reference for the active profile (alone
    where the course has none for this profile). Returns nothing, so a cell that ends with it echoes nothing."""
    profile = get_profile()
    ref = reference(key, profile)
    line = f"{key}: yours {_number(value, spread, digits)}"
    if ref is not None:
        line += f" · the course's {profile} run: {_number(ref['value'], ref.get('spread'), digits)}"  # its date: json
    print(line)
    if os.environ.get(RECORD):
        record(key, value, spread, profile)


def record(key: str, value: float, spread: float | None, profile: str) -> None:
    """Store ``value`` as the course's reference for ``key`` in ``profile`` (atomically; other keys are kept)."""
    table = _table()
    table.setdefault(profile, {})[key] = {"value": float(value), "spread": None if spread is None else float(spread),
                                          "date": date.today().isoformat()}
    write_text_atomic(FILE, json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
