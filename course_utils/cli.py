"""One way to check a command line, for every entry point: parse leniently, then one ``error:`` line per problem.

A script builds a ``Parser`` (argparse with ``INT`` / ``FLOAT`` types and ``choices`` that do not stop at the
first bad value), calls ``parse`` (the flags, and the problems argparse would have stopped at: an unknown
flag, a flag without its value, a value of the wrong type, a choice not offered), adds the checks of its own
(``rules`` for ranges) and ends with ``exit_on_problems``: every problem printed at once, exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
from collections.abc import Callable

# diffusers.optimization.get_scheduler's schedules that need no extra arguments, and Accelerate's precisions.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
MIXED_PRECISION = ("no", "fp16", "bf16")


class Unparsed(str):
    """A flag's text that is not of the flag's type; ``parse`` reports it along with every other problem."""

    kind = "a value"


def lenient(convert: Callable[[str], object], kind: str) -> Callable[[str], object]:
    """An argparse ``type`` that returns ``Unparsed`` instead of stopping the parse at the first bad value."""
    def parse_value(text: str):
        try:
            return convert(text)
        except ValueError:
            bad = Unparsed(text)
            bad.kind = kind
            return bad
    parse_value.__name__ = convert.__name__
    return parse_value


INT, FLOAT = lenient(int, "a whole number"), lenient(float, "a number")


class Parser(argparse.ArgumentParser):
    """argparse whose ``choices`` are checked by ``parse`` with every other problem, and whose own errors are
    one ``error:`` line (no usage block), exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.choice_lists: dict[str, tuple] = {}

    def add_argument(self, *names, choices=None, **kwargs):
        """``add_argument``, but a ``choices`` list is kept for ``parse`` to check (and shown as the metavar)."""
        action = super().add_argument(*names, **kwargs)
        if choices is not None:
            self.choice_lists[action.dest] = tuple(choices)
            action.metavar = action.metavar or "{" + ",".join(map(str, choices)) + "}"
        return action

    def error(self, message: str) -> None:
        """Print ``error: <message>`` and exit with code 2, as argparse does, without the usage block."""
        self.exit(2, f"error: {message} (--help lists the flags)\n")


def parse(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The flags as typed, with ``given_flags`` (the ones typed) added, and the problems found while parsing.

    Values of the wrong type stay ``Unparsed``; the script's own checks skip them (they are reported here).
    """
    argv, missing = _without_missing_values(parser, list(sys.argv[1:] if argv is None else argv))
    args, unknown = parser.parse_known_args(argv)
    defaults = {a.dest: a.default for a in parser._actions}
    for action in parser._actions:  # parse again with no defaults: which flags were typed
        action.default = argparse.SUPPRESS
    try:
        args.given_flags = frozenset(vars(parser.parse_known_args(argv)[0]))
    finally:
        for action in parser._actions:
            action.default = defaults[action.dest]
    problems = _unknown_problems(parser, unknown)
    for flag in missing:
        default = parser.get_default(flag.lstrip("-"))
        problems.append(f"{flag}: no value after it; give one ({flag} VALUE"
                        + (f", default {default})" if default not in (None, False) else ")"))
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        problems += [f"--{name} {v!r}: not {v.kind}" for v in values if isinstance(v, Unparsed)]
    for name, options in parser.choice_lists.items():
        value = getattr(args, name, None)
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v not in options:
                close = difflib.get_close_matches(str(v), list(map(str, options)), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "pick one of them"
                problems.append(f"--{name} {v!r}: not one of {', '.join(map(str, options))}; {hint}")
    return args, problems


def _unknown_problems(parser: Parser, unknown: list[str]) -> list[str]:
    """A line for each flag the parser does not have (with the closest one it has) and each stray value."""
    problems, unknown = [], list(unknown)
    flags = [o for a in parser._actions for o in a.option_strings]
    while unknown:
        flag = unknown.pop(0)
        if flag.startswith("-"):
            value = unknown.pop(0) if unknown and not unknown[0].startswith("-") else None
            typed = flag if value is None else f"{flag} {value}"
            close = difflib.get_close_matches(flag.split("=")[0], flags, n=1)
            hint = f"did you mean {close[0]}?" if close else "--help lists the flags"
            problems.append(f"{typed!r}: not a flag of this script; {hint}")
        else:
            problems.append(f"{flag!r}: an extra value after the flags (is a flag missing before it, or a quote?)")
    return problems


def _without_missing_values(parser: Parser, argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` without the flags typed with no value after them (argparse would stop at the first), and those
    flags. A negative number after a flag is its value (``--adam_beta1 -1e-3``; argparse would take it for a
    flag)."""
    takes_value = {o: a for a in parser._actions if a.nargs not in (0, "*", "?") for o in a.option_strings}
    kept, missing, rest = [], [], list(argv)
    while rest:
        arg = rest.pop(0)
        names = [o for o in takes_value if o == arg] or [o for o in takes_value if o.startswith(arg) and
                                                          arg.startswith("--")]
        if len(names) != 1 or "=" in arg:
            kept.append(arg)
        elif not rest or (rest[0].startswith("-") and not _is_number(rest[0])):
            missing.append(names[0])
        elif takes_value[names[0]].nargs is None:  # one value: glued on, so that a negative number stays a value
            kept.append(f"{arg}={rest.pop(0)}")
        else:
            kept.append(arg)
    return kept, missing


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (``-1e-3`` is a value, not a flag)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# Ranges for ``rules``: a test of the value and what it must be.
AT_LEAST_1 = (lambda v: v >= 1, "at least 1")
NOT_NEGATIVE = (lambda v: v >= 0, "0 or more")
POSITIVE = (lambda v: math.isfinite(v) and v > 0, "a finite number above 0")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")


def rules(args: argparse.Namespace, parser: argparse.ArgumentParser,
          checks: dict[str, tuple[Callable[[float], bool], str]]) -> list[str]:
    """A line for each flag whose value fails its test (values left None or ``Unparsed`` are skipped)."""
    problems = []
    for name, (good, what) in checks.items():
        value = getattr(args, name, None)
        if value is None or isinstance(value, Unparsed) or good(value):
            continue
        default = parser.get_default(name)
        problems.append(f"--{name} {value}: must be {what}"
                        + (f" (default: {default:g})" if isinstance(default, int | float) and default else ""))
    return problems


def typed(*values) -> bool:
    """Whether every value parsed (none is ``Unparsed``): checks that combine flags run only then."""
    return not any(isinstance(v, Unparsed) for v in values)


def errors(problems: list[str]) -> list[str]:
    """The problems as the lines a script prints: ``error: <problem>``."""
    return [f"error: {p}" for p in problems]


def exit_on_problems(lines: list[str]) -> None:
    """Print every ``error:`` line on stderr (once, from the first process) and exit with code 2, as argparse
    does; return when there are none."""
    if not lines:
        return
    if int(os.environ.get("RANK", 0)) == 0:
        print("\n".join(lines), file=sys.stderr)
    sys.exit(2)
