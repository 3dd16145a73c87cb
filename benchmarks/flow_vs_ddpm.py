"""Steps against quality for the shipped digit models: ``digits-28-flow`` (flow matching, Euler) and
``digits-28-reflow`` (the same after reflow) against ``digits-28`` (DDPM, v-prediction; DDIM and DPM-Solver++),
chapter 12's comparison at full size.

    python benchmarks/flow_vs_ddpm.py                 # 200 digits per row, steps 1 2 4 8 16 50, every sampler
    python benchmarks/flow_vs_ddpm.py --n 100 --steps 1 4 --samplers flow ddim

Samplers: ``flow`` (Euler, evenly spaced noise levels as the SD3/Flux pipelines space them), ``reflow`` (the
same Euler sampler on ``digits-28-reflow``), ``ddim`` (DDIM with
``trailing`` timesteps: the first step starts at t = 999, pure noise), ``ddim-leading`` (DDIM as chapter 6 and
diffusers' default spacing for this scheduler config: 4 steps start at t = 750, 1 step at t = 0) and ``dpm``
(DPM-Solver++ 2M, trailing). Every row samples the same starting noise (seed 0) and scores the digits with the
course's digit metric: the
confident share, the classes among them, and the Frechet distance to held-out real digits with its bootstrap
spread (``DigitScorer.frechet_spread``). Results go to ``benchmarks/results/`` as JSON and print as a Markdown
table.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from course_utils import pretrained
from course_utils.cli import INT, Parser, errors, exit_on_problems, parse
from course_utils.data import digits_28
from course_utils.files import write_text_atomic
from course_utils.metrics import quality_by_steps, train_digit_scorer

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLERS = ("flow", "reflow", "ddim", "ddim-leading", "dpm")


def main(argv: list[str] | None = None) -> dict:
    """Score every (model, sampler, steps) row; write the JSON; print the table."""
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=INT, default=200, help="digits per row")
    p.add_argument("--steps", type=INT, nargs="+", default=[1, 2, 4, 8, 16, 50])
    p.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    args, problems = parse(p, argv)
    exit_on_problems(errors(problems))
    scorer = train_digit_scorer()
    flow, ddpm = pretrained.load("digits-28-flow"), pretrained.load("digits-28")
    reflow = pretrained.load("digits-28-reflow")
    config, trailing = ddpm.scheduler.config, dict(timestep_spacing="trailing")
    samplers = {
        "flow": ("digits-28-flow, Euler", flow.unet, flow.scheduler),
        "reflow": ("digits-28-reflow, Euler", reflow.unet, reflow.scheduler),
        "ddim": ("digits-28, DDIM (trailing)", ddpm.unet, DDIMScheduler.from_config(config, **trailing)),
        "ddim-leading": ("digits-28, DDIM (leading, as chapter 6)", ddpm.unet, DDIMScheduler.from_config(config)),
        "dpm": ("digits-28, DPM-Solver++ (trailing)", ddpm.unet,
                DPMSolverMultistepScheduler.from_config(config, **trailing)),
    }
    start = time.perf_counter()
    rows = {}
    for key in args.samplers:
        name, unet, scheduler = samplers[key]
        rows[name] = quality_by_steps(scorer, unet, scheduler, args.steps, args.n)
    noise = torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    reference = {"real digits (train split)": scorer.score(digits_28("train").tensors[0][: args.n]),
                 "uniform noise": scorer.score(noise)}
    result = dict(n=args.n, steps=args.steps, rows=rows, reference=reference,
                  seconds=round(time.perf_counter() - start),
                  machine=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                  torch=torch.__version__, date=str(date.today()))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"flow_vs_ddpm-n{args.n}-{'-'.join(args.samplers)}-{date.today()}.json"
    write_text_atomic(out, json.dumps(result, indent=1))
    print(table(result))
    print("wrote", out)
    return result


def table(result: dict) -> str:
    """The Frechet distance (with its spread), confident share and seconds per row, one column per step count."""
    steps = result["steps"]
    lines = ["| model, sampler | " + " | ".join(f"{k} steps" for k in steps) + " |", "|---|" + "---|" * len(steps)]
    for name, by_steps in result["rows"].items():
        cells = [f"{r['frechet']:.1f} ± {r['frechet_spread']:.1f} ({r['confident']:.0%}, {r['seconds']:.0f} s)"
                 for r in (by_steps[k] if k in by_steps else by_steps[str(k)] for k in steps)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in result["reference"].items():
        lines.append(f"| {name} | {r['frechet']:.1f} ({r['confident']:.0%}) |" + " |" * (len(steps) - 1))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
