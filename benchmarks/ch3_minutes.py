"""What do chapter 3's `cpu` minutes buy? Its loop, per target, scored raw and as an EMA, per sampler.

    python benchmarks/ch3_minutes.py v_prediction ema:ddim50 raw:ddpm100 ema:ddpm100
    python benchmarks/ch3_minutes.py epsilon raw:ddpm100 ema:ddpm100 ema:ddpm1000

Chapter 3's `cpu` setting: 1,000 drawn butterflies (the offline data), 32 px, random flips, the (16, 32, 64) U-Net
with attention in its deepest level, AdamW lr 1e-3, batch 64, 25 epochs (400 steps), cosine schedule; an EMA of
the weights (diffusers' ``EMAModel``, decay 0.999 with warm-up) kept beside them. The data is decoded once
(``DeviceBatches``: the same pixels and flips as the chapter's DataLoader, less host work). Each ``weights:sampler``
pair draws 64 images (seed 0) and the course's butterfly metric scores them, with the bootstrap spread of the
Frechet distance (``metrics.score_spread``); the first 32 are saved as a PNG grid beside the JSON record.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import EMAModel

from course_utils import show_images
from course_utils.data import DeviceBatches, decode_images, load_butterflies
from course_utils.diffusion import ddpm_target, make_unet
from course_utils.files import write_text_atomic
from course_utils.metrics import score_spread, train_butterfly_scorer
from course_utils.sampling import sample_ddpm

SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def train(target: str, epochs: int, lr: float) -> tuple[torch.nn.Module, torch.nn.Module, DDPMScheduler, list, float]:
    """Chapter 3's cpu loop for ``target``: the trained model, its EMA, the scheduler, epoch losses, seconds."""
    torch.manual_seed(0)
    images = decode_images(load_butterflies(n_synthetic=1000).dataset["image"], 32)
    batches = DeviceBatches(images, 64, "cpu", flip=True, seed=0)
    model = make_unet(32, (16, 32, 64), 1, 1)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    ema = EMAModel(model.parameters(), decay=0.999, use_ema_warmup=True)
    start, losses = time.perf_counter(), []
    for _ in range(epochs):
        total = 0.0
        for clean in batches:
            noise = torch.randn_like(clean)
            t = torch.randint(0, 1000, (len(clean),))
            loss = F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample,
                              ddpm_target(scheduler, clean, noise, t))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            ema.step(model.parameters())
            total += loss.item()
        losses.append(total / len(batches))
    seconds = time.perf_counter() - start
    averaged = copy.deepcopy(model)
    ema.copy_to(averaged.parameters())
    return model, averaged, scheduler, losses, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", choices=["epsilon", "v_prediction"])
    p.add_argument("plan", nargs="+", help="weights:sampler pairs, e.g. raw:ddpm100 ema:ddim50 ema:ddpm1000")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()
    bad = []
    for pair in args.plan:
        weights, _, sampler = pair.partition(":")
        if weights not in ("raw", "ema") or sampler[:4] not in SAMPLERS or not sampler[4:].isdigit():
            bad.append(f"plan {pair!r}: write WEIGHTS:SAMPLERSTEPS with WEIGHTS raw or ema, SAMPLER ddpm or ddim")
    if bad:
        p.exit(2, "".join(f"error: {line}\n" for line in bad))
    model, averaged, scheduler, losses, seconds = train(args.target, args.epochs, args.lr)
    scorer, rows = train_butterfly_scorer(), []
    tag = f"ch3_minutes-{args.target}-{date.today().isoformat()}"
    args.out.mkdir(parents=True, exist_ok=True)
    for pair in args.plan:
        weights, _, sampler = pair.partition(":")
        kind, steps = sampler[:4], int(sampler[4:])
        start = time.perf_counter()
        x = (sample_ddpm({"raw": model, "ema": averaged}[weights], SAMPLERS[kind].from_config(scheduler.config),
                         64, steps, seed=0) + 1) / 2
        score = scorer.score(x)
        rows.append({"weights": weights, "sampler": sampler, "sample_seconds": round(time.perf_counter() - start, 1),
                     **score, "frechet_spread": score_spread(scorer, x)["frechet"]})
        show_images(x[:32] * 2 - 1, nrow=16).save(args.out / f"{tag}-{weights}-{sampler}.png")
        print(rows[-1], flush=True)
    record = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, Python {platform.python_version()}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads", "target": args.target,
              "epochs": args.epochs, "lr": args.lr, "train_seconds": round(seconds), "losses": losses, "rows": rows}
    path = args.out / f"{tag}.json"
    write_text_atomic(path, json.dumps(record, indent=1))
    print("written to", path)


if __name__ == "__main__":
    main()
