"""Consistency distillation of ``digits-28`` (LCM-style): how few steps, at what quality, for how many CPU-minutes?

    python benchmarks/consistency_distill.py                      # the issue's recipe: 1,500 steps at batch 32
    python benchmarks/consistency_distill.py --steps 20 --n 32    # a smoke run, end to end
    python benchmarks/consistency_distill.py --loss huber --skip 40 --tag huber-skip40
    python benchmarks/consistency_distill.py --skip 100 --teacher_steps 5   # a 10-point grid, 5 teacher steps a link

The algorithm (``course_utils.consistency``; chapter 14 writes it out), as Latent Consistency Models (Luo et al., 2023)
distil a teacher, on pixels:

- the consistency function ``f(x, t) = c_skip(t) x + c_out(t) x0(x, t)``, with LCM's boundary scalings
  (``sigma_data`` 0.5, ``timestep_scaling`` 10, as ``LCMScheduler.get_scalings_for_boundary_condition_discrete``):
  at t = 0 ``c_skip`` = 1 and ``c_out`` = 0, so ``f(x, 0) = x``;
- the teacher: one DDIM step (the probability-flow ODE) of ``digits-28`` from t_{n+1} to t_n = t_{n+1} - skip on the
  grid ``skip * i - 1`` (skip 20: the 50-step DDIM grid 19, 39, ..., 999, LCM's ``num_ddim_timesteps`` 50), or
  ``--teacher_steps`` DDIM steps over a coarser grid (skip 100 in 5: the same 50-step DDIM, a 10-point grid); no
  guidance (the model is unconditional);
- the student starts as a copy of the teacher's weights; the target network is an EMA of the student (0.95);
- the loss: the distance (squared error, or pseudo-Huber) between ``f_student(x_{t_{n+1}}, t_{n+1})`` and
  ``f_target(x_hat_{t_n}, t_n)``, where ``x_hat_{t_n}`` is the teacher's DDIM step from ``x_{t_{n+1}}``.

Then it samples the student with diffusers' ``LCMScheduler`` (from ``digits-28``'s scheduler config) at 1, 2, 4
and 8 steps, checks a multistep consistency sampler written out here against it on a seed, and scores every row
with the course's digit metric beside ``digits-28`` (DDIM and DPM-Solver++, trailing timesteps) and
``digits-28-reflow`` (Euler), all from the same starting noise. The record goes to ``benchmarks/results/``; a plot
and a sample grid to ``build/consistency/``.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler, LCMScheduler

from course_utils import pretrained
from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse, typed
from course_utils.consistency import (
    HUBER_C,
    SIGMA_DATA,
    TIMESTEP_SCALING,
    boundary_scalings,
    consistency,
    ddim_step,
    distil_step,
    ema_update,
    lcm_scheduler,
    x0_and_noise,
)
from course_utils.data import digits_28
from course_utils.files import save_pipeline, write_text_atomic
from course_utils.metrics import quality_by_steps, train_digit_scorer
from course_utils.sampling import sample_ddpm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PICTURES = ROOT / "build" / "consistency"
SAMPLE_STEPS = (1, 2, 4, 8)
SAMPLER_TOLERANCE = 1e-5  # hand-written sampler vs LCMScheduler, largest absolute difference in [-1, 1] pixels


# --- Multistep consistency sampling, written out ---------------------------------------------------------------


def lcm_timesteps(steps: int, skip: int, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The sampling timesteps: ``steps`` evenly spaced indices into the training grid, from its noisy end."""
    grid = (torch.arange(1, num_train_timesteps // skip + 1) * skip - 1).flip(0)
    return grid[np.floor(np.linspace(0, len(grid), steps, endpoint=False)).astype(np.int64)]


@torch.no_grad()
def sample_consistency(unet, scheduler: LCMScheduler, n: int, steps: int, seed: int = 0) -> torch.Tensor:
    """Denoise with f at each timestep, re-noise the clean estimate to the next one; the last estimate is the sample."""
    skip = scheduler.config.num_train_timesteps // scheduler.config.original_inference_steps
    timesteps, ac = lcm_timesteps(steps, skip, scheduler.config.num_train_timesteps), scheduler.alphas_cumprod
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=generator)
    for i, t in enumerate(timesteps):
        t_batch = t.repeat(n)
        x = consistency(unet, x, t_batch, ac, scheduler.config.prediction_type, clip=scheduler.config.clip_sample)
        if i + 1 < len(timesteps):  # re-noise the estimate to the next, lower, timestep
            x = scheduler.add_noise(x, torch.randn(x.shape, generator=generator), timesteps[i + 1].repeat(n))
    return x.clamp(-1, 1)


# --- Checks, training, scoring -----------------------------------------------------------------------------------


def check_pieces(teacher, config: dict, skip: int) -> dict:
    """Assert the written-out pieces against diffusers' on a seed; return what was checked."""
    lcm = lcm_scheduler(config, skip)
    ac = lcm.alphas_cumprod
    smallest = torch.tensor([0])
    c_skip, c_out = boundary_scalings(smallest)
    assert abs(float(c_skip) - 1) < 1e-6 and abs(float(c_out)) < 1e-6, "f(x, 0) = x: c_skip(0) = 1, c_out(0) = 0"
    for t in (0, 19, 499, 999):
        ours = [float(c) for c in boundary_scalings(torch.tensor([t]))]
        theirs = [float(c) for c in lcm.get_scalings_for_boundary_condition_discrete(torch.tensor(t))]
        assert np.allclose(ours, theirs, atol=1e-7), f"c_skip, c_out at t = {t} as LCMScheduler computes them"
    # The teacher's step equals diffusers' DDIM step (trailing 50-step grid, no clipping) from t = 499 to 479.
    ddim = DDIMScheduler.from_config(config, timestep_spacing="trailing", clip_sample=False)
    ddim.set_timesteps(config["num_train_timesteps"] // skip)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([499] * 4)
    with torch.no_grad():
        out = teacher(x, t).sample
    x0, eps = x0_and_noise(out, x, t, ac, config["prediction_type"])
    ours = ddim_step(x0, eps, t - skip, ac)
    theirs = ddim.step(out, 499, x).prev_sample
    assert torch.allclose(ours, theirs, atol=1e-5), "one written-out DDIM step = DDIMScheduler.step"
    return dict(c_skip_at_0=float(c_skip), c_out_at_0=float(c_out),
                c_skip_at_first_grid_step=float(boundary_scalings(torch.tensor([skip - 1]))[0]),
                ddim_step_max_diff=float((ours - theirs).abs().max()))


def main(argv: list[str] | None = None) -> dict:
    """Distil, sample, check, score; write the JSON, the plot and the grid; print the table."""
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=INT, default=1500, check="at least 1", help="optimizer steps")
    p.add_argument("--batch", type=INT, default=32, check="at least 1", help="images per step")
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="digits per scored row")
    p.add_argument("--skip", type=INT, default=20,
                   check=(lambda v: 1 <= v <= 500 and 1000 % v == 0, "a divisor of 1000, at most 500"),
                   help="timesteps per teacher DDIM step (20: the 50-step grid)")
    p.add_argument("--teacher_steps", type=INT, default=1, check="at least 1",
                   help="DDIM steps the teacher takes over one skip (1: LCM's single step)")
    p.add_argument("--ema", type=FLOAT, default=0.95, check="in [0, 1)", help="the target network's EMA decay")
    p.add_argument("--loss", choices=("l2", "huber"), default="l2", help="squared error or pseudo-Huber")
    p.add_argument("--lr", type=FLOAT, default=1e-4, check="a finite number above 0",
                   help="AdamW learning rate (constant)")
    p.add_argument("--score_every", type=INT, default=0, check="0 or more",
                   help="also score the student at 1/2/4/8 steps every this many training steps (0: at the end only)")
    p.add_argument("--tag", default=None, help="a name for the record (default: from the settings)")
    p.add_argument("--save_unet", type=Path, default=None,
                   help="save the distilled U-Net with its LCMScheduler as a DDPMPipeline folder here (not the repo)")
    p.add_argument("--seed", type=INT, default=0)
    args, problems = parse(p, argv)
    if typed(args.skip, args.teacher_steps) and args.teacher_steps >= 1 and args.skip % args.teacher_steps:
        problems.append(f"--teacher_steps {args.teacher_steps}: must divide --skip {args.skip}")
    if args.save_unet is not None and ROOT in args.save_unet.resolve().parents:
        problems.append(f"--save_unet {args.save_unet}: save outside the repository (shipping is a separate step)")
    exit_on_problems(errors(problems))

    torch.set_num_threads(1)  # the machine has 2 cores and other work on them
    torch.manual_seed(args.seed)
    teach = f"x{args.teacher_steps}" if args.teacher_steps > 1 else ""
    tag = args.tag or f"{args.loss}-skip{args.skip}{teach}-ema{args.ema:g}-{args.steps}x{args.batch}"
    scorer = train_digit_scorer()
    ddpm, reflow = pretrained.load("digits-28"), pretrained.load("digits-28-reflow")
    config = dict(ddpm.scheduler.config)
    prediction_type = config["prediction_type"]
    checks = check_pieces(ddpm.unet, config, args.skip)
    lcm = lcm_scheduler(config, args.skip)
    ac = lcm.alphas_cumprod
    grid = torch.arange(1, config["num_train_timesteps"] // args.skip + 1) * args.skip - 1

    teacher = ddpm.unet.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    target = copy.deepcopy(teacher).train().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    images = digits_28("train").tensors[0] * 2 - 1  # [-1, 1], as digits-28 was trained (Normalize(0.5, 0.5))
    generator = torch.Generator().manual_seed(args.seed)

    def score_student(steps=SAMPLE_STEPS) -> dict:
        student.eval()
        rows = quality_by_steps(scorer, student, lcm, steps, args.n)
        student.train()
        return rows

    load_at_start = [round(v, 2) for v in os.getloadavg()]  # the machine is shared: say how busy it was
    losses, progress, window, trained = [], [], [], 0.0
    order = torch.randperm(len(images), generator=generator)
    position = 0
    print(f"distilling digits-28: {args.steps} steps at batch {args.batch}, skip {args.skip} in "
          f"{args.teacher_steps} teacher step(s), EMA {args.ema}, "
          f"{args.loss} loss, lr {args.lr:g}, 1 thread")
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        if position + args.batch > len(order):  # a new epoch, reshuffled
            order, position = torch.randperm(len(images), generator=generator), 0
        batch = images[order[position: position + args.batch]]
        position += args.batch
        loss = distil_step(student, target, teacher, batch, args.skip, ac, prediction_type, generator, args.loss,
                           args.teacher_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        ema_update(target, student, args.ema)
        trained += time.perf_counter() - start
        window.append(loss.item())
        if step % 10 == 0 or step == args.steps:
            losses.append([step, round(float(np.mean(window)), 6)])
            window = []
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {losses[-1][1]:.5f}, {trained:.0f} s of training ({trained / step:.2f} s/step)",
                  flush=True)
        if args.score_every and step % args.score_every == 0 and step < args.steps:
            rows = score_student()
            progress.append(dict(step=step, train_seconds=round(trained, 1), rows=rows))
            print(f"  at step {step}: " + ", ".join(f"{k} steps Frechet {r['frechet']:.1f} ± {r['frechet_spread']:.1f}"
                                                    f" ({r['confident']:.0%})" for k, r in rows.items()), flush=True)
    student.eval()

    # The hand-written sampler against LCMScheduler's, on a seed, at every step count.
    sampler_diff = max(float((sample_consistency(student, lcm, 8, k, seed=1)
                              - sample_ddpm(student, lcm, 8, k, seed=1)).abs().max()) for k in SAMPLE_STEPS)
    assert sampler_diff <= SAMPLER_TOLERANCE, f"hand-written multistep sampler = LCMScheduler ({sampler_diff:.2e})"
    assert torch.equal(lcm_timesteps(4, args.skip), (lambda s: (s.set_timesteps(4), s.timesteps)[1])(
        LCMScheduler.from_config(lcm.config))), "the written-out timesteps are LCMScheduler's"

    trailing = dict(timestep_spacing="trailing")
    methods = {
        "digits-28-lcm (this run), LCMScheduler": (student, lcm, SAMPLE_STEPS),
        "digits-28, DDIM (trailing)": (ddpm.unet, DDIMScheduler.from_config(config, **trailing), (*SAMPLE_STEPS, 50)),
        "digits-28, DPM-Solver++ (trailing)": (ddpm.unet, DPMSolverMultistepScheduler.from_config(config, **trailing),
                                               SAMPLE_STEPS),
        "digits-28-reflow, Euler": (reflow.unet, reflow.scheduler, SAMPLE_STEPS),
    }
    score_start = time.perf_counter()
    rows = {name: quality_by_steps(scorer, unet, scheduler, steps, args.n)
            for name, (unet, scheduler, steps) in methods.items()}
    for by_steps in rows.values():
        for r in by_steps.values():
            r["seconds_per_image"] = round(r["seconds"] / args.n, 4)
    noise = torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    reference = {"real digits (train split)": scorer.score(digits_28("train").tensors[0][: args.n]),
                 "uniform noise": scorer.score(noise)}
    result = dict(
        tag=tag, date=str(date.today()), device=f"CPU (1 thread, {platform.machine()})",
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread used",
        threads=torch.get_num_threads(), torch=torch.__version__, diffusers=diffusers.__version__, n=args.n,
        load_average=dict(start=load_at_start, end=[round(v, 2) for v in os.getloadavg()]),
        recipe=dict(teacher="digits-28", prediction_type=prediction_type, steps=args.steps, batch=args.batch,
                    skip=args.skip, teacher_steps=args.teacher_steps,
                    teacher_grid=f"{len(grid)} timesteps, {int(grid[0])}..{int(grid[-1])}",
                    ema=args.ema, loss=args.loss, huber_c=HUBER_C if args.loss == "huber" else None, lr=args.lr,
                    optimizer="AdamW, weight decay 0, gradient norm clipped at 1", sigma_data=SIGMA_DATA,
                    timestep_scaling=TIMESTEP_SCALING, data="digits_28('train') scaled to [-1, 1]", seed=args.seed,
                    student="initialised from digits-28; scored and saved (the online weights, not the EMA target)",
                    scheduler=dict(lcm.config)),
        checks={**checks, "sampler_max_abs_diff": sampler_diff, "sampler_tolerance": SAMPLER_TOLERANCE},
        train_seconds=round(trained, 1), seconds_per_step=round(trained / args.steps, 3), losses=losses,
        progress=progress, rows=rows, reference=reference, score_seconds=round(time.perf_counter() - score_start))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"consistency_distill-{tag}-{date.today()}.json"
    write_text_atomic(out, json.dumps(result, indent=1, default=str))
    pictures(result, student, lcm, ddpm, reflow, config)
    if args.save_unet is not None:
        save_pipeline(DDPMPipeline(unet=student, scheduler=lcm), args.save_unet)
        print("saved the distilled pipeline to", args.save_unet)
    print(table(result))
    print("wrote", out, "and", PICTURES)
    return result


def table(result: dict) -> str:
    """Frechet ± spread, confident share, classes and seconds per image, one column per step count."""
    steps = sorted({int(k) for by in result["rows"].values() for k in by})
    lines = [f"Trained {result['recipe']['steps']} steps in {result['train_seconds'] / 60:.1f} min "
             f"({result['seconds_per_step']:.2f} s/step, {result['machine']}); {result['n']} digits per row.", "",
             "| method | " + " | ".join(f"{k} steps" for k in steps) + " |", "|---|" + "---|" * len(steps)]
    for name, by_steps in result["rows"].items():
        cells = []
        for k in steps:
            r = by_steps.get(k, by_steps.get(str(k)))
            cells.append("" if r is None else f"{r['frechet']:.1f} ± {r['frechet_spread']:.1f} ({r['confident']:.0%}, "
                         f"{r['classes']} cl, {r['seconds_per_image'] * 1000:.0f} ms/img)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in result["reference"].items():
        first = f"{r['frechet']:.1f} ({r['confident']:.0%}, {r['classes']} cl)"
        lines.append(f"| {name} | {first} |" + " |" * (len(steps) - 1))
    return "\n".join(lines)


def pictures(result: dict, student, lcm, ddpm, reflow, config: dict) -> None:
    """Quality against steps, one line per method; and a grid of samples, a row per (method, steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PICTURES.mkdir(parents=True, exist_ok=True)
    fig, (ax_f, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    for name, by_steps in result["rows"].items():
        ks = sorted(by_steps, key=int)
        ax_f.errorbar([int(k) for k in ks], [by_steps[k]["frechet"] for k in ks],
                      yerr=[by_steps[k]["frechet_spread"] for k in ks], marker="o", capsize=3, label=name)
        ax_c.plot([int(k) for k in ks], [by_steps[k]["confident"] for k in ks], marker="o", label=name)
    for name, r in result["reference"].items():
        if name.startswith("real"):
            ax_f.axhline(r["frechet"], color="grey", ls=":", label=name)
            ax_c.axhline(r["confident"], color="grey", ls=":")
    for ax, what in ((ax_f, "Frechet distance (lower is better)"), (ax_c, "confident share")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.set_ylabel(what)
    ax_f.set_yscale("log")
    ax_f.legend(fontsize=7)
    fig.suptitle(f"{result['n']} digits per point, seed 0; consistency distillation: {result['tag']}")
    fig.tight_layout()
    fig.savefig(PICTURES / f"quality-{result['tag']}.png", dpi=110)
    plt.close(fig)

    trailing = DDIMScheduler.from_config(config, timestep_spacing="trailing")
    rows = [(f"consistency, {k} step{'s' * (k > 1)}", student, lcm, k) for k in (1, 2, 4)]
    rows += [("digits-28-reflow, 1 step", reflow.unet, reflow.scheduler, 1),
             ("digits-28, DDIM 2 steps", ddpm.unet, trailing, 2), ("digits-28, DDIM 50 steps", ddpm.unet, trailing, 50)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.1 * len(rows)))
    for ax, (label, unet, scheduler, k) in zip(axes, rows, strict=True):
        x = (sample_ddpm(unet, scheduler, 12, k, seed=0) + 1) / 2
        ax.imshow(torch.cat(list(x[:, 0]), dim=1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(PICTURES / f"samples-{result['tag']}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
