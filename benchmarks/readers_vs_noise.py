"""Do the course's three readers call noise a digit, a butterfly or a sound? Their confident share, set by set.

    python benchmarks/readers_vs_noise.py          # 200 images per noise set
    python benchmarks/readers_vs_noise.py --n 500

Each reader (``course_utils.metrics``: the digit classifier, the butterfly reader, the sound reader; trained on
first use, then cached) scores held-out real images and five sets with nothing to read: uniform noise, Gaussian
noise (N(0.5, 0.5²) clipped to [0, 1], chapter 2's "Gaussian noise" row), soft blobs, flat images and, between
the two, the real images blurred (a stand-in for an undertrained model's samples). A reader worth trusting gives
real images a high confident share and the noise sets one near zero. The record (every number, the machine, the
date) goes to ``benchmarks/results/``; a Markdown table is printed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

from course_utils import audio, metrics
from course_utils.cli import INT, Parser, errors, exit_on_problems, parse
from course_utils.data import digits_28

SETS = ("real held-out", "uniform noise", "Gaussian noise", "blobs", "flat", "real, blurred")


def image_sets(real: torch.Tensor, n: int, seed: int) -> dict[str, torch.Tensor]:
    """The six sets for a reader whose real images are ``real`` (N, C, H, W) in [0, 1]: ``n`` images per noise set,
    drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, *real.shape[1:])
    channels, size = real.shape[1], real.shape[-1]
    return {"real held-out": real,
            "uniform noise": torch.rand(shape, generator=g),
            "Gaussian noise": (0.5 + 0.5 * torch.randn(shape, generator=g)).clamp(0, 1),
            "blobs": metrics.blobs(n, g, channels, size),
            "flat": torch.rand(n, channels, 1, 1, generator=g).expand(shape).contiguous(),
            "real, blurred": gaussian_blur(real, 5, 1.5)}


def readers(n_real: int) -> dict[str, tuple[object, torch.Tensor, dict]]:
    """Each reader, its held-out real images and the reader's own numbers (accuracies, seconds to train or load)."""
    out = {}
    for name, train, real in (
        ("digits", metrics.train_digit_scorer, lambda: digits_28("test").tensors[0][:n_real]),
        ("butterflies", metrics.train_butterfly_scorer,
         lambda: metrics.drawn_butterflies(range(200_000, 200_000 + n_real))),
        ("sound", metrics.train_sound_scorer, lambda: audio.clip_images(range(600_000, 600_000 + n_real), seed=12)[0]),
    ):
        start = time.perf_counter()
        scorer = train()
        seconds = time.perf_counter() - start
        info = {k: round(v, 4) for k, v in vars(scorer).items() if k.endswith("accuracy")}
        out[name] = (scorer, real(), {"seconds to train or load": round(seconds, 1), **info})
    return out


def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="images per noise set")
    p.add_argument("--n_real", type=INT, default=200, check="at least 2", help="held-out real images per reader")
    p.add_argument("--seed", type=INT, default=1, help="seed of the noise sets")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args, problems = parse(p, argv)
    exit_on_problems(errors(problems))
    load = os.getloadavg()
    rows, about = {}, {}
    for name, (scorer, real, info) in readers(args.n_real).items():
        options = {"tonal": False} if name == "sound" else {}  # pyin on every noise image: slow, and not the point
        rows[name] = {s: {k: round(v, 4) for k, v in scorer.score(x, **options).items()}
                      for s, x in image_sets(real, args.n, args.seed).items()}
        about[name] = info
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"torch {torch.__version__.split('+')[0]}")
    record = dict(date=str(date.today()), machine=machine, load_before=[round(v, 2) for v in load],
                  load_after=[round(v, 2) for v in os.getloadavg()], reader_version=metrics.READER_VERSION,
                  n=args.n, n_real=args.n_real, seed=args.seed, readers=about, scores=rows)
    args.out.mkdir(parents=True, exist_ok=True)
    file = args.out / f"readers_vs_noise-{date.today()}.json"
    file.write_text(json.dumps(record, indent=1) + "\n")
    print(f"confident share ({args.n_real} real images, {args.n} per noise set; {record['machine']})\n")
    print("| reader | " + " | ".join(SETS) + " |\n" + "|---" * (len(SETS) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[s]['confident']:.1%}" for s in SETS) + " |")
    print(f"\nrecord: {file}")


if __name__ == "__main__":
    main()
