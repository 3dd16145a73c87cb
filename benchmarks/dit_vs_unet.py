"""A diffusion transformer (DiT) against the U-Net on the same work, for the same CPU-minutes: class-conditional
digits with the flow-matching loss and classifier-free guidance.

    python benchmarks/dit_vs_unet.py                          # 6 minutes of training per model, 200 digits per row
    python benchmarks/dit_vs_unet.py --minutes 0.2 --n 20     # a smoke run, end to end
    python benchmarks/dit_vs_unet.py --minutes 10 --lr_dit 5e-4 --tag dit-lr5e-4

What it measures:

- two models of about the same parameter count (both printed): diffusers' ``DiTTransformer2DModel`` (patch 2 on a
  28 px digit: 196 tokens, adaLN-zero blocks conditioned on the timestep and the class) and a class-conditional
  ``UNet2DModel`` (``course_utils.diffusion.make_unet``, chapter 7's kind of model, narrower);
- each trained from scratch for the same wall-clock budget (``--minutes``, one thread) at batch 64 with AdamW and
  its own constant learning rate (after 25 warm-up steps), on ``digits_28("train")`` scaled to [-1, 1], with the
  course's flow-matching loss (``course_utils.diffusion.diffusion_loss`` with a ``FlowMatchEulerDiscreteScheduler``:
  sigma uniform in [0, 1], x_t = (1 - sigma) x0 + sigma noise, velocity target noise - x0, timestep sigma * 1000;
  each label replaced by the "no class" label 10 with probability 0.1). The DiT sits behind a small wrapper that
  gives it the U-Net's call (``model(x, t, class_labels).sample``) so the very same loss and sampler serve both;
  its built-in label dropout (diffusers draws one per block) is switched off so both models see the same drops;
- steps done, images/s of training, the loss curve against seconds;
- samples: the guided Euler sampler written out here (checked equal to ``course_utils.sampling.sample_with_guidance``
  on a seed), 20 steps, guidance 1 and 2, ``--n`` digits per row with the labels 0-9 in turn, the same starting
  noise for both models; scored with the course's digit metric: the confident share, the classes among the
  confident, the Frechet distance with its bootstrap spread (``DigitScorer.frechet_spread``), and the share
  "as asked": read with confidence as the digit that was asked for;
- scaling (speed only, no training to convergence): images/s of a training step at batch 64 for the DiT at each
  patch size and both models at each image size (digits upsampled to 56 px), a few steps each after a warm-up.

The record goes to ``benchmarks/results/dit_vs_unet-<tag>-<date>.json``; the loss plot, a sample grid per model and
the speed bars to ``build/dit_vs_unet/``. ``--publish`` also writes its summary to ``course_utils/dit_vs_unet.json``,
which chapter 13 reads (the shipped one is from the 6-minute record).
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
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler

from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse
from course_utils.data import digits_28
from course_utils.diffusion import ClassDiT, diffusion_loss, make_unet
from course_utils.files import write_text_atomic
from course_utils.metrics import NOT_A_DIGIT, train_digit_scorer
from course_utils.sampling import sample_with_guidance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = ROOT / "course_utils" / "dit_vs_unet.json"  # the summary chapter 13 reads (--publish)
PICTURES = ROOT / "build" / "dit_vs_unet"
CLASSES = 10  # digits; label 10 is "no class" for classifier-free guidance
DROP = 0.1  # the share of labels replaced by "no class" in training
WARMUP = 25  # optimizer steps of linear learning-rate warm-up
SAMPLER_TOLERANCE = 1e-5  # written-out guided Euler vs sample_with_guidance, largest absolute difference
# The two models, chosen near the same parameter count (printed and recorded).
DIT = dict(num_layers=4, num_attention_heads=4, attention_head_dim=32)  # width 128
UNET = dict(channels=(32, 48, 64), layers_per_block=2, attention=1)  # attention at the 7x7 level


def make_model(kind: str, size: int = 28, patch: int = 2) -> torch.nn.Module:
    """The DiT (``patch`` pixels a side per token) or the U-Net for ``size`` px single-channel images."""
    if kind == "dit":
        return ClassDiT(size, patch, in_channels=1, classes=CLASSES, **DIT)
    return make_unet(size, UNET["channels"], UNET["layers_per_block"], UNET["attention"], in_channels=1,
                     num_class_embeds=CLASSES + 1)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- Guided Euler sampling, written out ---------------------------------------------------------------------------


@torch.no_grad()
def sample_guided_euler(model, labels: torch.Tensor, steps: int, guidance: float, seed: int = 0) -> torch.Tensor:
    """Flow matching's Euler sampler with classifier-free guidance: from pure noise at sigma = 1, each step takes
    v = v_uncond + g (v_cond - v_uncond) and moves x by (sigma_next - sigma) v; images in [-1, 1], one per label."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas  # 1 ... 1/steps, then 0
    model.eval()
    size, channels = model.config.sample_size, model.config.in_channels
    x = torch.randn((len(labels), channels, size, size), generator=torch.Generator().manual_seed(seed))
    no_class = torch.full_like(labels, CLASSES)
    for i in range(steps):
        t = sigmas[i] * 1000
        if guidance == 1:
            v = model(x, t, class_labels=labels).sample
        else:
            v_cond, v_uncond = model(torch.cat([x, x]), t, class_labels=torch.cat([labels, no_class])).sample.chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x.clamp(-1, 1)


# --- Training for a wall-clock budget ------------------------------------------------------------------------------


def train_for(model, images: torch.Tensor, labels: torch.Tensor, seconds: float, lr: float, batch: int,
              seed: int) -> dict:
    """AdamW at a constant ``lr`` (after ``WARMUP`` steps of linear warm-up) on the flow-matching loss until
    ``seconds`` of training have passed; the loss every step with the seconds it was reached at."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses, clock, step, trained = [], [], 0, 0.0
    order, position = torch.randperm(len(images), generator=generator), 0
    while trained < seconds:
        start = time.perf_counter()
        if position + batch > len(order):  # a new epoch, reshuffled
            order, position = torch.randperm(len(images), generator=generator), 0
        index = order[position: position + batch]
        position += batch
        loss = diffusion_loss(model, scheduler, images[index], labels[index], generator=generator,
                              class_drop_prob=DROP)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()
        trained += time.perf_counter() - start
        step += 1
        losses.append(loss.item())
        clock.append(trained)
    model.eval()
    return dict(steps=step, seconds=round(trained, 1), images_per_s=round(step * batch / trained, 1),
                losses=losses, clock=clock)


def curve(losses: list[float], clock: list[float], points: int = 100) -> list[list[float]]:
    """The loss curve for the record: [seconds, mean loss] over ``points`` equal runs of steps."""
    chunks = np.array_split(np.arange(len(losses)), min(points, len(losses)))
    return [[round(clock[c[-1]], 1), round(float(np.mean([losses[i] for i in c])), 5)] for c in chunks if len(c)]


def step_speed(model, size: int, steps: int, batch: int = 64) -> float:
    """Images/s of a training step (forward, backward, AdamW) at ``size`` px, after one warm-up step."""
    images = F.interpolate(digits_28("train").tensors[0][:batch] * 2 - 1, size=(size, size), mode="bilinear")
    labels = torch.arange(batch) % CLASSES
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler, generator = FlowMatchEulerDiscreteScheduler(), torch.Generator().manual_seed(0)
    model.train()
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = diffusion_loss(model, scheduler, images, labels, generator=generator, class_drop_prob=DROP)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


# --- Scoring -------------------------------------------------------------------------------------------------------


@torch.no_grad()
def score(scorer, samples: torch.Tensor, labels: torch.Tensor) -> dict:
    """The digit metric on samples in [-1, 1], plus the share read with confidence as the digit asked for."""
    images = (samples + 1) / 2
    result = scorer.score(images)
    result["frechet_spread"] = scorer.frechet_spread(images)
    probs = F.softmax(scorer.model(images.clamp(0, 1)), dim=1)[:, :NOT_A_DIGIT]
    top, read = probs.max(1)
    result["as_asked"] = float(((top >= 0.9) & (read == labels)).float().mean())
    return result


# --- Pictures ------------------------------------------------------------------------------------------------------


def pictures(result: dict, samples: dict, labels: torch.Tensor, names: dict) -> list[Path]:
    """The loss against seconds, a sample grid per model (rows: digits 0-9) and the speed bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PICTURES.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, run in result["models"].items():
        seconds, loss = zip(*run["loss_curve"], strict=True)
        ax.plot(seconds, loss, label=f"{names[key]} ({run['steps']} steps)")
    ax.set(xlabel="seconds of training (1 CPU thread)", ylabel="flow-matching loss (mean over a run of steps)",
           title="Training loss against wall-clock time")
    ax.legend()
    fig.tight_layout()
    written.append(PICTURES / "loss.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    columns = max(1, min(8, len(labels) // CLASSES))
    for key, by_guidance in samples.items():
        fig, axes = plt.subplots(1, len(by_guidance), figsize=(3.2 * len(by_guidance), 4.2), squeeze=False)
        for ax, (guidance, images) in zip(axes[0], by_guidance.items(), strict=True):
            rows = []
            for digit in range(CLASSES):
                picked = images[labels == digit][:columns]
                picked = torch.cat([picked, -torch.ones(columns - len(picked), *picked.shape[1:])])
                rows.append(torch.cat(list(picked[:, 0]), dim=1))
            ax.imshow(((torch.cat(rows, dim=0) + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)
            r = result["rows"][key][str(guidance)]
            ax.set_title(f"guidance {guidance:g}: Frechet {r['frechet']:.0f} ± {r['frechet_spread']:.0f}\n"
                         f"{r['confident']:.0%} confident, {r['as_asked']:.0%} as asked", fontsize=9)
            ax.set_yticks([28 * d + 14 for d in range(CLASSES)], [str(d) for d in range(CLASSES)])
            ax.set_xticks([])
            ax.set_ylabel("digit asked for")
        fig.suptitle(f"{names[key]}: {result['models'][key]['steps']} steps in "
                     f"{result['models'][key]['seconds']:.0f} s, 20 Euler steps")
        fig.tight_layout()
        written.append(PICTURES / f"samples-{key}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    speed = result["speed"]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(speed) + 1.2))
    ax.barh([s["name"] for s in speed], [s["images_per_s"] for s in speed],
            color=["tab:orange" if s["model"] == "DiT" else "tab:blue" for s in speed])
    for i, s in enumerate(speed):
        ax.text(s["images_per_s"], i, f" {s['images_per_s']:.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="training images/s (batch 64, forward + backward + AdamW, 1 CPU thread)",
           title="Training speed against patch size and image size")
    fig.tight_layout()
    written.append(PICTURES / "speed.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def table(result: dict) -> str:
    """The measured rows as Markdown: one line per model and guidance scale."""
    lines = ["| model | parameters | steps | train images/s | guidance | Frechet | confident | classes | as asked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, run in result["models"].items():
        for guidance, r in result["rows"][key].items():
            lines.append(f"| {run['name']} | {run['parameters'] / 1e6:.2f} M | {run['steps']} | {run['images_per_s']} "
                         f"| {guidance} | {r['frechet']:.1f} ± {r['frechet_spread']:.1f} | {r['confident']:.0%} "
                         f"| {r['classes']} | {r['as_asked']:.0%} |")
    for name, r in result["reference"].items():
        lines.append(f"| {name} | | | | | {r['frechet']:.1f} | {r['confident']:.0%} | {r['classes']} | |")
    lines += ["", "| speed row | tokens | parameters | images/s |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['tokens'] or ''} | {s['parameters'] / 1e6:.2f} M | {s['images_per_s']:.0f} |"
              for s in result["speed"]]
    return "\n".join(lines)


def summary(result: dict) -> dict:
    """What chapter 13 shows of a record: per model its steps and speed, per guidance scale its scores."""
    return dict(minutes=result["settings"]["minutes"], n=result["settings"]["n"], device=result["device"],
                date=result["date"], sample_steps=result["settings"]["sample_steps"],
                models={m["name"].split(" (")[0]: dict(parameters=m["parameters"], steps=m["steps"],
                                                       images_per_s=m["images_per_s"])
                        for m in result["models"].values()},
                rows={result["models"][key]["name"].split(" (")[0]: {
                    g: {k: round(r[k], 3) for k in ("frechet", "frechet_spread", "confident", "as_asked")}
                    for g, r in by_guidance.items()} for key, by_guidance in result["rows"].items()})


def main(argv: list[str] | None = None) -> dict:
    """Train both models for the budget, sample, score, time the scaling rows; write the JSON and the pictures."""
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=FLOAT, default=6.0, check="a finite number above 0",
                   help="wall-clock training minutes per model")
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="digits per scored row (labels 0-9 in turn)")
    p.add_argument("--lr_dit", type=FLOAT, default=2e-3, check="a finite number above 0",
                   help="the DiT's AdamW learning rate (as the U-Net's)")
    p.add_argument("--lr_unet", type=FLOAT, default=2e-3, check="a finite number above 0",
                   help="the U-Net's AdamW learning rate (chapter 7's)")
    p.add_argument("--batch", type=INT, default=64, check="at least 1", help="images per training step")
    p.add_argument("--steps", type=INT, default=20, check="at least 1", help="Euler sampling steps")
    p.add_argument("--guidance", type=FLOAT, nargs="+", default=[1.0, 2.0], help="guidance scales to score")
    p.add_argument("--patches", type=INT, nargs="+", default=[2, 4], help="DiT patch sizes for the speed rows")
    p.add_argument("--sizes", type=INT, nargs="+", default=[28, 56], help="image sizes for the speed rows")
    p.add_argument("--speed_steps", type=INT, default=3, check="at least 1", help="timed training steps per speed row")
    p.add_argument("--tag", default=None, help="a name for the record (default: from the settings)")
    p.add_argument("--seed", type=INT, default=0)
    p.add_argument("--publish", action="store_true",
                   help="also write the summary chapter 13 reads (course_utils/dit_vs_unet.json)")
    args, problems = parse(p, argv)
    problems += [f"--guidance {g}: must be a finite number, 0 or more" for g in args.guidance
                 if isinstance(g, float) and not (np.isfinite(g) and g >= 0)]
    problems += [f"--sizes {s}: must be a multiple of 4 and of every patch size, at least 8" for s in args.sizes
                 if isinstance(s, int) and not (s >= 8 and s % 4 == 0 and all(
                     s % q == 0 for q in args.patches if isinstance(q, int) and q > 0))]
    problems += [f"--patches {q}: must be at least 1" for q in args.patches if isinstance(q, int) and q < 1]
    exit_on_problems(errors(problems))

    torch.set_num_threads(1)  # the machine has 2 cores and other work on them
    torch.manual_seed(args.seed)
    tag = args.tag or f"{args.minutes:g}min-n{args.n}"
    load_at_start = [round(v, 2) for v in os.getloadavg()]  # the machine is shared: say how busy it was
    data = digits_28("train")
    images, labels = data.tensors[0] * 2 - 1, data.tensors[1]
    scorer = train_digit_scorer()
    models = {"dit": make_model("dit"), "unet": make_model("unet")}
    names = {"dit": f"DiT (patch 2, {DIT['num_layers']} blocks, width "
                    f"{DIT['num_attention_heads'] * DIT['attention_head_dim']})",
             "unet": f"U-Net (levels {UNET['channels']}, attention at 7x7)"}
    lrs = {"dit": args.lr_dit, "unet": args.lr_unet}
    for key, model in models.items():
        print(f"{names[key]}: {parameters(model) / 1e6:.3f} M parameters", flush=True)

    runs = {}
    for key, model in models.items():
        torch.manual_seed(args.seed)
        run = train_for(model, images, labels, args.minutes * 60, lrs[key], args.batch, args.seed)
        tail = run["losses"][-max(1, run["steps"] // 10):]
        runs[key] = dict(name=names[key], parameters=parameters(model), lr=lrs[key], steps=run["steps"],
                         seconds=run["seconds"], images_per_s=run["images_per_s"],
                         final_loss=round(float(np.mean(tail)), 5), loss_curve=curve(run["losses"], run["clock"]))
        print(f"{names[key]}: {run['steps']} steps in {run['seconds']:.0f} s ({run['images_per_s']} images/s), "
              f"loss over the last tenth {runs[key]['final_loss']:.4f}", flush=True)

    # The written-out guided sampler against the course's, on a seed, for both models.
    check_labels = torch.arange(5)
    sampler_diff = max(float((sample_guided_euler(m, check_labels, 3, 2.0, seed=1)
                              - sample_with_guidance(m, FlowMatchEulerDiscreteScheduler(), 3, check_labels, 2.0,
                                                     seed=1)).abs().max()) for m in models.values())
    assert sampler_diff <= SAMPLER_TOLERANCE, f"written-out guided Euler = sample_with_guidance ({sampler_diff:.2e})"

    sample_labels = torch.arange(args.n) % CLASSES
    rows, samples, sample_seconds = {}, {}, {}
    for key, model in models.items():
        rows[key], samples[key], sample_seconds[key] = {}, {}, {}
        for guidance in args.guidance:
            start = time.perf_counter()
            x = sample_guided_euler(model, sample_labels, args.steps, guidance, seed=args.seed)
            sample_seconds[key][str(guidance)] = round(time.perf_counter() - start, 1)
            samples[key][guidance] = x
            rows[key][str(guidance)] = {**score(scorer, x, sample_labels),
                                        "sample_seconds": sample_seconds[key][str(guidance)]}
            r = rows[key][str(guidance)]
            print(f"{names[key]}, guidance {guidance:g}: Frechet {r['frechet']:.1f} ± {r['frechet_spread']:.1f}, "
                  f"{r['confident']:.0%} confident, {r['classes']} classes, {r['as_asked']:.0%} as asked", flush=True)
    real = digits_28("test")
    reference = {"real digits (test split)": score(scorer, real.tensors[0][: args.n] * 2 - 1,
                                                   real.tensors[1][: args.n]),
                 "real digits (train split)": score(scorer, images[: args.n], labels[: args.n])}

    speed = []
    for size in args.sizes:
        for patch in args.patches:
            torch.manual_seed(args.seed)
            model = make_model("dit", size, patch)
            speed.append(dict(model="DiT", name=f"DiT patch {patch}, {size} px", size=size, patch=patch,
                              tokens=(size // patch) ** 2, parameters=parameters(model),
                              images_per_s=round(step_speed(model, size, args.speed_steps, args.batch), 1)))
            print(f"speed: {speed[-1]['name']} ({speed[-1]['tokens']} tokens): {speed[-1]['images_per_s']} images/s",
                  flush=True)
        torch.manual_seed(args.seed)
        model = make_model("unet", size)
        speed.append(dict(model="U-Net", name=f"U-Net, {size} px", size=size, patch=None, tokens=None,
                          parameters=parameters(model),
                          images_per_s=round(step_speed(model, size, args.speed_steps, args.batch), 1)))
        print(f"speed: {speed[-1]['name']}: {speed[-1]['images_per_s']} images/s", flush=True)

    result = dict(
        tag=tag, date=str(date.today()), device=f"CPU (1 thread, {platform.machine()})",
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread used",
        threads=torch.get_num_threads(), torch=torch.__version__, diffusers=diffusers.__version__,
        load_average=dict(start=load_at_start, end=[round(v, 2) for v in os.getloadavg()]),
        settings=dict(minutes=args.minutes, n=args.n, batch=args.batch, sample_steps=args.steps,
                      guidance=args.guidance, seed=args.seed, drop=DROP, warmup_steps=WARMUP,
                      optimizer="AdamW (default weight decay 0.01), gradient norm clipped at 1, constant lr after "
                                "warm-up",
                      loss="flow matching, course_utils.diffusion.diffusion_loss, sigma ~ U[0, 1], t = 1000 sigma",
                      data="digits_28('train') scaled to [-1, 1], with labels", dit=DIT,
                      unet=dict(UNET, num_class_embeds=CLASSES + 1),
                      as_asked="share read with probability >= 0.9 as the digit asked for",
                      speed=dict(patches=args.patches, sizes=args.sizes, steps=args.speed_steps, batch=args.batch,
                                 data="digits_28 upsampled (bilinear) to each size; fresh untrained models")),
        checks=dict(sampler_max_abs_diff=sampler_diff, sampler_tolerance=SAMPLER_TOLERANCE),
        models=runs, rows=rows, reference=reference, speed=speed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"dit_vs_unet-{tag}-{date.today()}.json"
    write_text_atomic(out, json.dumps(result, indent=1, default=str))
    for path in pictures(result, samples, sample_labels, names):
        print("wrote", path)
    print(table(result))
    print("wrote", out)
    if args.publish:
        write_text_atomic(SHIPPED, json.dumps(summary(json.loads(out.read_text())), indent=1) + "\n")
        print("wrote", SHIPPED)
    return result


if __name__ == "__main__":
    main()
