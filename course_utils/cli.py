"""One way to check a command line, for every entry point: a ``Parser`` keeps a bad value instead of stopping at
it, ``parse`` lists what argparse would have stopped at and each value out of its flag's range, a script adds its
own checks, and ``exit_on_problems`` prints every problem as one ``error:`` line, all at once, exit code 2."""

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
    """A flag's text that is not of the flag's type (``kind`` says what it should be); ``parse`` reports it."""


def lenient(convert: Callable[[str], object], kind: str | None = None) -> Callable[[str], object]:
    """An argparse ``type`` keeping a value ``convert`` refuses as ``Unparsed`` (``kind``: or the ValueError's)."""
    def parse_value(text: str):
        try:
            return convert(text)
        except ValueError as err:
            bad = Unparsed(text)
            bad.kind = kind or str(err)
            return bad
    return parse_value


INT, FLOAT = lenient(int, "a whole number"), lenient(float, "a number")


class Parser(argparse.ArgumentParser):
    """argparse whose ``choices`` (naming the closest) and ``check`` (a range: one of ``RANGES`` by name, or a test
    and what the value must be) ``parse`` checks with the rest, and whose own errors are one ``error:`` line."""

    def add_argument(self, *names, choices=None, check=None, **kwargs):
        def choose(text: str) -> str:
            if text not in choices:
                close = difflib.get_close_matches(text, choices, n=1)
                raise ValueError(f"one of {', '.join(choices)}; "
                                 + (f"did you mean {close[0]!r}?" if close else "pick one of them"))
            return text
        if choices is not None:
            kwargs.update(type=lenient(choose), metavar="{" + ",".join(choices) + "}")
        action = super().add_argument(*names, **kwargs)
        action.check = (RANGES[check], check) if isinstance(check, str) else check or (None, "")
        return action

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (--help lists the flags)\n")


def parse(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The flags, with ``given_flags`` (the ones typed), and every problem argparse would stop at (an unknown flag,
    a flag without its value, a value not of its type or choices: left ``Unparsed``) or out of its ``check``."""
    rest, kept, given, missing = list(sys.argv[1:] if argv is None else argv), [], set(), []
    flags = {o: a for a in parser._actions for o in a.option_strings}
    while rest:
        arg = rest.pop(0)
        name = arg.split("=")[0]
        found = [o for o in flags if o == name] or [o for o in flags if arg.startswith("--") and o.startswith(name)]
        action = flags[found[0]] if len(found) == 1 else None
        if action is None or "=" in arg or action.nargs in (0, "*", "?"):
            kept.append(arg)
        elif not rest or (rest[0].startswith("-") and isinstance(FLOAT(rest[0]), Unparsed)):  # argparse stops here
            default = "" if action.default in (None, False) else f", default {action.default}"
            missing.append(f"{found[0]}: no value after it; give one ({found[0]} VALUE{default})")
            continue
        else:  # one value is glued on, so that a negative number stays a value (``--adam_beta1 -1e-3``)
            kept += [f"{arg}={rest.pop(0)}"] if action.nargs is None else [arg]
        if action is not None:
            given.add(action.dest)
    args, unknown = parser.parse_known_args(kept)
    args.given_flags = frozenset(given)
    problems = []
    while unknown:  # a flag this parser lacks (with its value, and the closest flag it has), or a stray value
        item = unknown.pop(0)
        if not item.startswith("-"):
            problems.append(f"{item!r}: an extra value after the flags (is a flag missing before it, or a quote?)")
            continue
        close = difflib.get_close_matches(item.split("=")[0], list(flags), n=1)
        hint = f"did you mean {close[0]}?" if close else "--help lists the flags"
        value = f" {unknown.pop(0)}" if unknown and not unknown[0].startswith("-") else ""
        problems.append(f"{item + value!r}: not a flag of this script; {hint}")
    problems, ranges = problems + missing, []  # then the values not of their type, then those out of range
    for action in parser._actions:
        value, (good, what), default = getattr(args, action.dest, None), action.check, action.default
        bad = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, Unparsed)]
        problems += [f"--{action.dest} {v!r}: not {v.kind}" for v in bad]
        note = f" (default: {default:g})" if isinstance(default, int | float) and default else ""
        ranges += failing((good and value is not None and not bad and not good(value),
                           f"--{action.dest} {value}: must be {what}{note}"))
    return args, problems + ranges


# The ranges a flag's ``check`` can name: what the value must be -> its test.
RANGES = {"at least 1": lambda v: v >= 1, "at least 2": lambda v: v >= 2, "0 or more": lambda v: v >= 0,
          "a finite number above 0": lambda v: math.isfinite(v) and v > 0, "in [0, 1)": lambda v: 0 <= v < 1,
          "between 0 and 1, e.g. 1e-3": lambda v: 0 < v < 1}


def failing(*checks: tuple[object, str]) -> list[str]:
    """The message of each (condition, message) check whose condition is true."""
    return [message for bad, message in checks if bad]


def typed(*values) -> bool:
    """Whether every value parsed (none is ``Unparsed``): checks that combine flags run only then."""
    return not any(isinstance(v, Unparsed) for v in values)


def errors(problems: list[str]) -> list[str]:
    """The problems as the lines a script prints: ``error: <problem>``."""
    return [f"error: {p}" for p in problems]


def exit_on_problems(lines: list[str]) -> None:
    """Print every ``error:`` line on stderr (once, from the first process) and exit with code 2, if any."""
    if lines:
        if int(os.environ.get("RANK", 0)) == 0:
            print("\n".join(lines), file=sys.stderr)
        sys.exit(2)
