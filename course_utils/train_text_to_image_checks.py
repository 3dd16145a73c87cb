"""The checks of ``python -m course_utils.train_text_to_image``: its flags, and every problem with them, the output
folder and a checkpoint to resume, found before anything is drawn, built or written (one ``error:`` line each)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .cli import AT_LEAST_1, FLOAT, INT, LR_SCHEDULERS, MIXED_PRECISION, NOT_NEGATIVE, Parser, errors, parse, rules

STAGES = ("vae", "unet")


def build_parser() -> Parser:
    """The script's flags (named as in diffusers' ``train_text_to_image.py`` where they mean the same)."""
    p = Parser(prog="python -m course_utils.train_text_to_image",
               description="Train the course's tiny Stable Diffusion on captioned synthetic butterflies.")
    p.add_argument("--output_dir", type=Path, default=Path("tiny-sd"),
                   help="where the pipeline, checkpoints and log go (default: tiny-sd)")
    p.add_argument("--resolution", type=INT, default=32, help="image size (a multiple of 8; latents are a quarter)")
    p.add_argument("--num_images", type=INT, default=5000, help="synthetic butterflies drawn for training")
    p.add_argument("--seed", type=INT, default=0)
    p.add_argument("--vae_steps", type=INT, default=1000,
                   help="stage 1: VAE updates (0: keep the VAE untrained; its scaling factor is still measured)")
    p.add_argument("--vae_batch_size", type=INT, default=64)
    p.add_argument("--vae_learning_rate", type=FLOAT, default=1e-3)
    p.add_argument("--kl_weight", type=FLOAT, default=1e-6, help="weight of the VAE's KL term (Stable Diffusion: 1e-6)")
    p.add_argument("--max_train_steps", type=INT, default=2500, help="stage 2: U-Net + text encoder updates")
    p.add_argument("--train_batch_size", type=INT, default=128)
    p.add_argument("--learning_rate", type=FLOAT, default=1e-3)
    p.add_argument("--lr_scheduler", default="cosine", choices=LR_SCHEDULERS)
    p.add_argument("--lr_warmup_steps", type=INT, default=200)
    p.add_argument("--mixed_precision", default="no", choices=MIXED_PRECISION)
    p.add_argument("--checkpointing_steps", type=INT, default=500)
    p.add_argument("--checkpoints_total_limit", type=INT, default=1)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags as typed, with ``parse_problems`` (unknown flags, missing values, bad types and choices)."""
    args, args.parse_problems = parse(build_parser(), argv)
    return args


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the flags, one ``error:`` line each (nothing is drawn, built or written)."""
    problems = list(getattr(args, "parse_problems", []))
    between_0_and_1 = (lambda v: 0 < v < 1, "between 0 and 1, e.g. 1e-3")
    problems += rules(args, build_parser(), {
        **{flag: AT_LEAST_1 for flag in ("num_images", "vae_batch_size", "max_train_steps", "train_batch_size",
                                         "checkpointing_steps", "checkpoints_total_limit")},
        "vae_steps": NOT_NEGATIVE, "lr_warmup_steps": NOT_NEGATIVE,
        "learning_rate": between_0_and_1, "vae_learning_rate": between_0_and_1,
        "kl_weight": (lambda v: 0 <= v < 1, "in [0, 1), e.g. 1e-6"),
        "resolution": (lambda v: v >= 16 and v % 8 == 0, "a multiple of 8, at least 16 (e.g. 32)"),
    })
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        problems.append("--mixed_precision fp16: needs a GPU; use no (or bf16) on a CPU")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        problems.append(f"--output_dir {out}: is a file; pass a folder (it is created if missing)")
    elif args.resume_from_checkpoint is None and out.is_dir() and any(p.name[0] != "." for p in out.iterdir()):
        problems.append(f"--output_dir {out}: holds another run; pass --resume_from_checkpoint latest to continue "
                        "it, or a new folder")
    elif args.resume_from_checkpoint not in (None, "latest"):
        problems += _checkpoint_problems(Path(args.resume_from_checkpoint), out)
    return errors(problems)


def stage_of(checkpoint: Path) -> str:
    """The stage a checkpoint folder belongs to: "vae" or "unet" (from ``checkpoints-<stage>/checkpoint-N``)."""
    return checkpoint.parent.name.removeprefix("checkpoints-")


def _checkpoint_problems(ckpt: Path, out: Path) -> list[str]:
    """Problems with ``--resume_from_checkpoint <path>``: a checkpoint of this run, of a stage that is still due."""
    flag = f"--resume_from_checkpoint {ckpt}"
    stage = stage_of(ckpt)
    if not (ckpt / "course_step.json").is_file() or stage not in STAGES:
        return [f"{flag}: not a checkpoint of this script (want {out}/checkpoints-vae/checkpoint-N or "
                f"{out}/checkpoints-unet/checkpoint-N, or latest)"]
    if ckpt.resolve().parent.parent != out.resolve():
        return [f"{flag}: belongs to another run; pass that run's folder as --output_dir (it holds the VAE and "
                "tokenizer the checkpoint was trained with)"]
    vae_done = (out / "vae" / "config.json").is_file()
    if stage == "unet" and not vae_done:
        return [f"{flag}: {out}/vae is missing, so stage 2 cannot go on; resume the VAE stage (latest) instead"]
    if stage == "vae" and vae_done:
        return [f"{flag}: the VAE stage has finished ({out}/vae); resuming it would retrain the VAE and lose stage 2: "
                "pass latest"]
    return []
