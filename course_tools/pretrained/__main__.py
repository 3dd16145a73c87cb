"""``python -m course_tools.pretrained``: train a shipped pipeline again with its recipe (``--retrain NAME``),
score one again and rewrite its card (``--card NAME``), or list them (``--list``); see ``course_utils.pretrained``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_utils.cli import INT, Parser, errors, exit_on_problems, parse
from course_utils.pretrained import NAMES, RECIPES, path

from .cards import write_card
from .retraining import retrain


def build_parser() -> Parser:
    """``--retrain NAME [--steps N] [--work_dir] [--out | --in_place] [--resume]``, ``--card NAME``, ``--list``."""
    p = Parser(prog="python -m course_tools.pretrained", description=__doc__.split("\n")[0])
    p.add_argument("--retrain", choices=NAMES, help="train this pipeline again with its recipe")
    p.add_argument("--steps", type=INT, default=None, check="at least 1",
                   help="optimizer updates (default: the shipped run's)")
    p.add_argument("--work_dir", type=Path, default=None, help="where data, checkpoints and logs go")
    p.add_argument("--out", type=Path, default=None, help="where the pipeline goes (or the folder --card rescores)")
    p.add_argument("--in_place", action="store_true",
                   help="write into the package's own folder course_utils/pretrained/NAME (replacing the shipped one)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --retrain from its checkpoint")
    p.add_argument("--card", choices=NAMES, help="score a pipeline again and rewrite its model card")
    p.add_argument("--list", action="store_true", help="list the shipped pipelines")
    return p


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the command line, one ``error:`` line each; nothing is trained or written."""
    problems = list(args.parse_problems)
    problems += [f"{flag} {value}: is a file, not a folder; pass a folder (it is created if missing)"
                 for flag, value in (("--out", args.out), ("--work_dir", args.work_dir)) if value and value.is_file()]
    if args.card and args.retrain:
        problems.append(f"--card {args.card} with --retrain {args.retrain}: give one; --retrain already scores the "
                        "new pipeline and writes its card")
    name = args.retrain or args.card
    if args.resume and args.retrain in NAMES and RECIPES[args.retrain].distilled_from:
        problems.append(f"--resume with --retrain {args.retrain}: its distillation keeps no checkpoints (one process, "
                        "minutes); run it again without --resume")
    if name not in NAMES:  # not a shipped name: already reported by the parse
        return errors(problems)
    shipped = args.out is None or args.out.expanduser().resolve() == path(name)
    if shipped and not args.in_place:
        problems.append(f"{'--retrain' if args.retrain else '--card'} {name} would overwrite the shipped "
                        f"course_utils/pretrained/{name}; pass --out FOLDER to write elsewhere, or --in_place to "
                        "replace the shipped one")
    if args.in_place and not shipped:
        problems.append(f"--in_place with --out {args.out}: --in_place writes into course_utils/pretrained/{name}; "
                        "drop one of them")
    if args.card in NAMES and not ((args.out or path(args.card)) / "training.json").is_file():
        problems.append(f"--card {args.card}: {args.out or path(args.card)} has no training.json; pass --out with the "
                        "folder a --retrain wrote")
    return errors(problems)


def main(argv: list[str] | None = None) -> None:
    """Check the command line, then retrain, rescore or list."""
    parser = build_parser()
    args, args.parse_problems = parse(parser, argv)
    if args.in_place and not (args.retrain or args.card):
        args.parse_problems.append("--in_place only means something with --retrain NAME or --card NAME")
    exit_on_problems(check_args(args))
    if args.card:
        print("wrote", write_card(args.card, args.out))
        return
    if args.list or not args.retrain:
        for name in NAMES:
            print(f"{name:24s} {RECIPES[name].description}")
        return
    print("saved", retrain(args.retrain, args.steps, args.work_dir, args.out, args.resume))


if __name__ == "__main__":
    main(sys.argv[1:])
