"""Where does ``digits-28-lcm``'s 2-step gap come from: its first step, or its second? Each finished two ways.

    python benchmarks/lcm_second_step.py                  # 200 digits, re-noised at t = 499, 699 and 899
    python benchmarks/lcm_second_step.py --renoise 499 --n 500

A 2-step LCM sample is the student's jump from noise (f at t = 999), re-noised to a timestep t, and a second jump
(f at t). This script keeps the first jump and the fresh noise fixed and finishes each re-noised image twice: with
the student's second step, and with the teacher's (``digits-28``) own deterministic DDIM path from t down to 0 on
its 50-step trailing grid, the best a second step could do. Where the teacher's finish is no better than the
student's, the second step is not what limits the sample; where the teacher's finish from t = 499 still falls
short of its own 50-step samples, the first jump has already fixed a shape the rest cannot undo. Rows are scored
by the course's digit classifier (confident share, classes, Frechet distance with its bootstrap spread); the
record (every number, the machine, the date) goes to ``benchmarks/results/``; a Markdown table is printed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from course_utils import pretrained
from course_utils.cli import INT, Parser, errors, exit_on_problems, parse
from course_utils.consistency import consistency
from course_utils.files import write_text_atomic
from course_utils.metrics import train_digit_scorer
from course_utils.sampling import sample_ddpm


@torch.no_grad()
def teacher_finish(unet, config: dict, x: torch.Tensor, t: int) -> torch.Tensor:
    """The teacher's deterministic DDIM path from ``x`` at timestep ``t`` to a clean image: the timesteps of the
    50-step trailing grid at or below ``t`` (``t`` itself must be on that grid)."""
    scheduler = DDIMScheduler.from_config(config, timestep_spacing="trailing")
    scheduler.set_timesteps(50)
    for step in [int(s) for s in scheduler.timesteps if s <= t]:
        x = scheduler.step(unet(x, step).sample, step, x).prev_sample
    return x


def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__.split("\n")[0])
    on_grid = (lambda v: not all(isinstance(t, int) for t in v) or all(t % 20 == 19 and 0 < t < 1000 for t in v),
               "timesteps 19, 39, ..., 999")  # (a value that did not parse is reported as such)
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="digits per row")
    p.add_argument("--renoise", type=INT, nargs="+", default=[499, 699, 899], check=on_grid,
                   help="timesteps to re-noise the first jump to (on the 50-step trailing grid: 19, 39, ..., 999)")
    p.add_argument("--seed", type=INT, default=0, help="seed of the starting noise (seed + 1: the re-noising)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args, problems = parse(p, argv)
    exit_on_problems(errors(problems))
    load, start = os.getloadavg(), time.perf_counter()
    scorer = train_digit_scorer()
    student, teacher = pretrained.load("digits-28-lcm"), pretrained.load("digits-28")
    s_unet, t_unet = student.unet.float().eval(), teacher.unet.float().eval()
    alphas_cumprod = student.scheduler.alphas_cumprod
    kind = student.scheduler.config.prediction_type
    noise = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
    fresh = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed + 1))

    def f(x: torch.Tensor, t: int) -> torch.Tensor:
        with torch.no_grad():
            return consistency(s_unet, x, torch.full((len(x),), t), alphas_cumprod, kind)

    def scored(x: torch.Tensor) -> dict:
        images = ((x.clamp(-1, 1) + 1) / 2).float()
        row = {k: round(v, 4) for k, v in scorer.score(images).items()}
        return {**row, "frechet_spread": round(scorer.frechet_spread(images), 2)}

    first = f(noise, 999)
    ddim = DDIMScheduler.from_config(teacher.scheduler.config, timestep_spacing="trailing")
    rows = {"student, 1 step": scored(first),
            "teacher, DDIM 50 steps from the noise": scored(sample_ddpm(t_unet, ddim, args.n, 50, noise=noise))}
    for t in args.renoise:
        a = alphas_cumprod[t]
        x_t = a.sqrt() * first + (1 - a).sqrt() * fresh
        rows[f"re-noised at {t}, student's 2nd step"] = scored(f(x_t, t))
        rows[f"re-noised at {t}, teacher's DDIM from there"] = scored(teacher_finish(t_unet, teacher.scheduler.config,
                                                                                      x_t, t))
    n_threads = torch.get_num_threads()
    record = dict(date=str(date.today()), device=f"CPU ({n_threads} thread{'s' * (n_threads > 1)}, "
                                                 f"{platform.machine()})",
                  machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                          f"torch {torch.__version__.split('+')[0]}",
                  load_before=[round(v, 2) for v in load], load_after=[round(v, 2) for v in os.getloadavg()],
                  seconds=round(time.perf_counter() - start, 1), n=args.n, seed=args.seed, renoise=args.renoise,
                  student_grid=student.scheduler.config.original_inference_steps, rows=rows)
    args.out.mkdir(parents=True, exist_ok=True)
    file = args.out / f"lcm_second_step-n{args.n}-{date.today()}.json"
    write_text_atomic(file, json.dumps(record, indent=1) + "\n")
    print(f"digits-28-lcm, {args.n} digits per row, same starting noise and re-noising ({record['device']})\n")
    print("| row | confident | classes | Frechet ± spread |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['confident']:.1%} | {r['classes']} | {r['frechet']:.1f} ± {r['frechet_spread']:.1f} |")
    print(f"\nrecord: {file}")


if __name__ == "__main__":
    main()
