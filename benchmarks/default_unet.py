"""How long does a training step of the script's default U-Net take for small images, and of the alternatives?

    python benchmarks/default_unet.py                 # 16 px, batch 128, as in the issue's 40-epoch goal
    python benchmarks/default_unet.py --resolution 32

One forward + backward + AdamW step on random images at the given batch size, median of 4 after a warm-up; the
estimate is that times the optimizer steps of 40 epochs of 1,797 images (the offline digits), without the
script's sample grids and startup.
"""

from __future__ import annotations

import platform
from datetime import date

import torch
from tiny_sd_sizes import step_seconds  # noqa: E402  (benchmarks/ is the script's folder)

from course_utils.cli import INT, Parser, errors, exit_on_problems, parse
from course_utils.diffusion import default_unet, make_unet

CANDIDATES = [  # (name, channels, layers per block, attention levels)
    ("(32, 64), 2 layers, attention at 8x8 (the default before 2026-11-29)", (32, 64), 2, 1),
    ("(32, 64), 1 layer, attention at 8x8", (32, 64), 1, 1),
    ("(32, 64, 64), 1 layer, attention at 4x4", (32, 64, 64), 1, 1),
    ("(16, 32, 64), 1 layer, attention at 4x4", (16, 32, 64), 1, 1),
]


def main() -> None:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=INT, default=16)
    p.add_argument("--batch", type=INT, default=128)
    p.add_argument("--images", type=INT, default=1797)
    p.add_argument("--epochs", type=INT, default=40)
    args, problems = parse(p)
    exit_on_problems(errors(problems))
    steps = args.epochs * -(-args.images // args.batch)
    torch.manual_seed(0)
    model, described = default_unet(args.resolution)
    rows = [(f"the script's default now: {described}", model)]
    rows += [(name, make_unet(args.resolution, ch, layers_per_block=lpb, attention=att))
             for name, ch, lpb, att in CANDIDATES]
    print(f"{date.today()}, CPU {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}; "
          f"{args.resolution} px, batch {args.batch}, {steps} steps = {args.epochs} epochs of {args.images} images")
    print("| U-Net | parameters | step | 40 epochs |\n|---|---|---|---|")
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    t = torch.randint(0, 1000, (args.batch,))
    for name, m in rows:
        s = step_seconds(m, lambda m: (m(x, t).sample - x).pow(2).mean(), repeats=4)
        print(f"| {name} | {sum(q.numel() for q in m.parameters()):,} | {s:.3f} s | {steps * s / 60:.1f} min |",
              flush=True)


if __name__ == "__main__":
    main()
