"""LCM-LoRA on ``tiny-sd-butterflies``: does a LoRA trained for minutes on a CPU sample in 1-4 steps as well as the
base does in 50?

    python benchmarks/lcm_lora.py                                   # the measured run: 1,500 steps at batch 32
    python benchmarks/lcm_lora.py --steps 20 --n 32 --tag smoke     # a smoke run, end to end
    python benchmarks/lcm_lora.py --guidance 5 5 --tag fixed-w5     # one folded guidance scale instead of a range

``course_utils.lcm_lora.train`` distils the base (the teacher: its DDIM step on the 50-step grid, classifier-free
guidance with a scale drawn per latent from ``--guidance`` folded in) into LoRA adapters on its U-Net; the student
is its own target (no EMA copy), as diffusers' ``train_lcm_distill_lora_sd_wds.py`` does.

Every row samples the captions of ``--n`` held-out drawings (seed 0, the same starting noise) and the butterfly
reader scores them: wing and background read as captioned (± the binomial standard error), confident share, wing
colours covered, Frechet distance in the reader's features (± its bootstrap spread). Rows: the base with DDIM at
2, 4 and 50 steps (its shipped "leading" spacing and "trailing", guidance 5 as the card samples); the base with
``LCMScheduler`` and no LoRA (the scheduler alone); base + LoRA with ``LCMScheduler`` at 1, 2, 4 and 8 steps,
guidance 1 (folded in). ``--score_every`` also scores the LoRA at 1, 2 and 4 steps during training (how long
until it is useful). The record goes to ``benchmarks/results/``, a sample grid to ``build/lcm_lora/``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from course_utils import lcm_lora, pretrained, tiny_sd
from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse, typed
from course_utils.consistency import lcm_scheduler
from course_utils.files import write_text_atomic
from course_utils.metrics import score_spread, train_butterfly_scorer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PICTURES = ROOT / "build" / "lcm_lora"
BASE_GUIDANCE = 5.0  # the tiny SD's card samples at 5 (its best Frechet of 1, 3, 5, 7.5)
LCM_STEPS = (1, 2, 4, 8)


def score_rows(scorer, pipeline, prompts: list[str], wings: list[str], backgrounds: list[str],
               steps: tuple[int, ...], guidance: float) -> dict:
    """The reader's scores of ``pipeline``'s samples for ``prompts`` (seed 0) at each step count."""
    rows, n = {}, len(prompts)
    for k in steps:
        start = time.perf_counter()
        x = tiny_sd.generate(pipeline, prompts, guidance_scale=guidance, steps=k, seed=0)
        seconds = time.perf_counter() - start
        wing = float(np.mean([a == b for a, b in zip(scorer.wing_colours(x), wings, strict=True)]))
        background = float(np.mean([a == b for a, b in zip(scorer.background_colours(x), backgrounds, strict=True)]))
        rows[k] = {**scorer.score(x), "frechet_spread": score_spread(scorer, x)["frechet"],
                   "wing as captioned": wing, "wing_se": (wing * (1 - wing) / n) ** 0.5,
                   "background as captioned": background, "background_se": (background * (1 - background) / n) ** 0.5,
                   "seconds_per_image": round(seconds / n, 5)}
    return rows


def with_scheduler(pipeline, scheduler) -> StableDiffusionPipeline:
    """The same parts (shared, not copied) with another scheduler."""
    out = StableDiffusionPipeline(**{**pipeline.components, "scheduler": scheduler}, requires_safety_checker=False)
    out.set_progress_bar_config(disable=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Train the LoRA, score every row, write the record and the picture, print the table."""
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=INT, default=1500, check="at least 1", help="optimizer steps")
    p.add_argument("--batch", type=INT, default=32, check="at least 1", help="latents per step")
    p.add_argument("--n_images", type=INT, default=2000, help="training drawings (the base's, 0..n-1)")
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="held-out captions per scored row")
    p.add_argument("--skip", type=INT, default=20,
                   check=(lambda v: 1 <= v <= 500 and 1000 % v == 0, "a divisor of 1000, at most 500"),
                   help="timesteps per teacher DDIM step (20: the 50-step grid)")
    p.add_argument("--guidance", type=FLOAT, nargs=2, default=list(lcm_lora.GUIDANCE), metavar=("LOW", "HIGH"),
                   help="the range of guidance scales folded in (s in uncond + s (cond - uncond))")
    p.add_argument("--rank", type=INT, default=8, check="at least 1", help="LoRA rank (alpha = rank)")
    p.add_argument("--lr", type=FLOAT, default=1e-3, check="a finite number above 0",
                   help="AdamW learning rate (constant)")
    p.add_argument("--loss", choices=("l2", "huber"), default="l2", help="squared error or pseudo-Huber")
    p.add_argument("--score_every", type=INT, default=0, check="0 or more",
                   help="also score the LoRA every this many steps (0: never)")
    p.add_argument("--save_lora", type=Path, default=None, help="save the LoRA here (outside the repository)")
    p.add_argument("--tag", default=None, help="a name for the record (default: from the settings)")
    p.add_argument("--seed", type=INT, default=0)
    args, problems = parse(p, argv)
    if typed(args.n_images, args.batch) and args.n_images < args.batch:
        problems.append(f"--n_images {args.n_images}: must be at least --batch "
                        f"(default: {p.get_default('n_images'):g})")
    if typed(*args.guidance) and not 1 <= args.guidance[0] <= args.guidance[1]:
        problems.append(f"--guidance {args.guidance[0]:g} {args.guidance[1]:g}: LOW <= HIGH, both at least 1")
    if args.save_lora is not None and ROOT in args.save_lora.resolve().parents:
        problems.append(f"--save_lora {args.save_lora}: save outside the repository (shipping is a separate step)")
    exit_on_problems(errors(problems))

    torch.set_num_threads(1)  # the machine has 2 cores and other work on them
    low, high = args.guidance
    tag = args.tag or (f"r{args.rank}-skip{args.skip}-lr{args.lr:g}-w{low:g}-{high:g}-{args.loss}-"
                       f"{args.steps}x{args.batch}")
    scorer = train_butterfly_scorer()
    pipe = pretrained.load("tiny-sd-butterflies")
    config = dict(pipe.scheduler.config)
    drawn, attrs = tiny_sd.held_out_drawings(args.n)
    wings, backgrounds = [a.wing for a in attrs], [a.background for a in attrs]
    prompts = [tiny_sd.caption(w, b) for w, b in zip(wings, backgrounds, strict=True)]
    load_at_start = [round(v, 2) for v in os.getloadavg()]

    def score(pipeline, steps, guidance):
        return score_rows(scorer, pipeline, prompts, wings, backgrounds, steps, guidance)

    lcm = with_scheduler(pipe, lcm_scheduler(config, args.skip))
    rows = {f"base, DDIM (leading, as shipped), guidance {BASE_GUIDANCE:g}": score(pipe, (2, 4, 50), BASE_GUIDANCE),
            f"base, DDIM (trailing), guidance {BASE_GUIDANCE:g}": score(
                with_scheduler(pipe, DDIMScheduler.from_config(config, timestep_spacing="trailing")), (2, 4),
                BASE_GUIDANCE),
            "base, LCMScheduler, no LoRA, guidance 1": score(lcm, (1, 2, 4), 1.0),
            f"base, LCMScheduler, no LoRA, guidance {BASE_GUIDANCE:g}": score(lcm, (1, 2, 4), BASE_GUIDANCE)}
    before_lora = {f"base, DDIM {k} steps, guidance {BASE_GUIDANCE:g}": tiny_sd.generate(
        pipe, prompts[:12], BASE_GUIDANCE, k, seed=0) for k in (2, 4, 50)}
    before_lora["base, LCMScheduler without LoRA, 2 steps, guidance 1"] = tiny_sd.generate(lcm, prompts[:12], 1.0, 2)

    progress, scoring = [], [0.0]  # seconds spent scoring during training (not training time)

    def report(step: int, loss: float, seconds: float) -> None:
        seconds -= scoring[0]
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {loss:.5f}, {seconds:.0f} s ({seconds / step:.2f} s/step)", flush=True)
        if args.score_every and step % args.score_every == 0 and step < args.steps:
            begin = time.perf_counter()
            by_steps = score(lcm, (1, 2, 4), 1.0)  # lcm shares pipe.unet, which carries the adapters in training
            scoring[0] += time.perf_counter() - begin
            progress.append(dict(step=step, train_seconds=round(seconds, 1), rows=by_steps))
            print(f"  at step {step}: " + ", ".join(
                f"{k} steps wing {r['wing as captioned']:.0%} bg {r['background as captioned']:.0%} Frechet "
                f"{r['frechet']:.1f} ± {r['frechet_spread']:.1f}" for k, r in by_steps.items()), flush=True)

    print(f"LCM-LoRA: {args.steps} steps at batch {args.batch}, rank {args.rank}, guidance {low:g}-{high:g} folded "
          f"in, {args.loss} loss, lr {args.lr:g}, 1 thread", flush=True)
    start = time.perf_counter()
    lora, losses = lcm_lora.train(pipe, args.steps, args.n_images, args.batch, args.skip, (low, high), args.rank,
                                  lr=args.lr, loss=args.loss, seed=args.seed, report=report)
    train_seconds = time.perf_counter() - start - scoring[0]
    rows["base + LCM-LoRA (this run), LCMScheduler, guidance 1"] = score(lcm, LCM_STEPS, 1.0)
    rows["base + LCM-LoRA (this run), LCMScheduler, guidance 2"] = score(lcm, (2, 4), 2.0)
    reference = {"drawn butterflies (held out)": scorer.score(drawn)}

    size = None
    if args.save_lora is not None:
        file = lcm_lora.save_lora(lora, args.save_lora)
        size = file.stat().st_size
        reloaded = lcm_lora.load_lcm_lora(pretrained.load("tiny-sd-butterflies"), args.save_lora, args.skip)
        diff = float((tiny_sd.generate(reloaded, prompts[:8], 1.0, 4) - tiny_sd.generate(lcm, prompts[:8], 1.0, 4))
                     .abs().max())
        assert diff < 1e-4, f"the saved LoRA, loaded back, samples as the trained one ({diff:.2e})"
        print(f"saved the LoRA to {file} ({size:,} bytes)")
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    n_unet = sum(p.numel() for n, p in lora.named_parameters() if "lora_" not in n)
    result = dict(
        tag=tag, date=str(date.today()), device=f"CPU (1 thread, {platform.machine()})",
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread used",
        threads=torch.get_num_threads(), torch=torch.__version__, diffusers=diffusers.__version__, n=args.n,
        load_average=dict(start=load_at_start, end=[round(v, 2) for v in os.getloadavg()]),
        settings=dict(base="tiny-sd-butterflies", prediction_type=config["prediction_type"],
                      beta_schedule=config["beta_schedule"], steps=args.steps, batch=args.batch,
                      n_images=args.n_images, skip=args.skip, guidance_folded=[low, high], rank=args.rank,
                      targets=list(lcm_lora.LCM_TARGETS), lr=args.lr, loss=args.loss, seed=args.seed,
                      optimizer="AdamW, weight decay 0, gradient norm clipped at 1, constant lr",
                      target="the student itself under no_grad (no EMA copy)", base_guidance=BASE_GUIDANCE,
                      scheduler=dict(lcm.scheduler.config)),
        lora_parameters=n_lora, unet_parameters=n_unet, lora_bytes=size,
        train_seconds=round(train_seconds, 1), seconds_per_step=round(train_seconds / args.steps, 3),
        losses=[[i + 10, round(float(np.mean(losses[i:i + 10])), 6)] for i in range(0, len(losses), 10)],
        progress=progress, rows=rows, reference=reference)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"lcm_lora-{tag}-{date.today()}.json"
    write_text_atomic(out, json.dumps(result, indent=1, default=str))
    picture(tag, before_lora, {k: tiny_sd.generate(lcm, prompts[:12], 1.0, k, seed=0) for k in (1, 2, 4)},
            prompts[:12])
    print(table(result))
    print("wrote", out, "and", PICTURES)
    return result


def table(result: dict) -> str:
    """Wing / background as captioned, Frechet ± spread, confident share; one line per (row, steps)."""
    lines = [f"Trained {result['settings']['steps']} steps in {result['train_seconds'] / 60:.1f} min "
             f"({result['seconds_per_step']:.2f} s/step, {result['machine']}); {result['n']} captions per row; "
             f"LoRA {result['lora_parameters']:,} parameters ({result['lora_bytes'] or '?'} bytes).", "",
             "| sampler | steps | wing as captioned | background as captioned | Frechet | confident | ms/image |",
             "|---|---|---|---|---|---|---|"]
    for name, by_steps in result["rows"].items():
        for k, r in by_steps.items():
            lines.append(f"| {name} | {k} | {r['wing as captioned']:.0%} ± {r['wing_se']:.0%} | "
                         f"{r['background as captioned']:.0%} ± {r['background_se']:.0%} | {r['frechet']:.1f} ± "
                         f"{r['frechet_spread']:.1f} | {r['confident']:.0%} | {r['seconds_per_image'] * 1000:.1f} |")
    for name, r in result["reference"].items():
        lines.append(f"| {name} | | | | {r['frechet']:.1f} | {r['confident']:.0%} | |")
    return "\n".join(lines)


def picture(tag: str, base: dict, lora: dict, prompts: list[str]) -> None:
    """A row per sampler (base DDIM 2/4/50 steps, base LCMScheduler, LCM-LoRA 1/2/4 steps), the same 12 prompts
    and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PICTURES.mkdir(parents=True, exist_ok=True)
    rows = list(base.items())
    rows += [(f"LCM-LoRA, {k} step{'s' * (k > 1)}, guidance 1", x) for k, x in lora.items()]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.2 * len(rows)))
    for ax, (label, x) in zip(axes, rows, strict=True):
        ax.imshow(torch.cat(list(x), dim=2).permute(1, 2, 0).numpy())
        ax.set_title(label, fontsize=8, loc="left")
        ax.axis("off")
    fig.suptitle("; ".join(prompts[:3]) + "; ...", fontsize=7)
    fig.tight_layout()
    fig.savefig(PICTURES / f"samples-{tag}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
