"""Which training recipe gives the best digits per CPU-minute? Train each for a wall-clock budget, score as it goes.

    python benchmarks/cpu_recipe.py                          # every recipe, 4 minutes each, scored at 2 and 4
    python benchmarks/cpu_recipe.py --recipes wide-ema-v --minutes 2 4 8

Each recipe trains a 28x28 digit U-Net (no attention) on the course's digits (MNIST online, scikit-learn's
digits offline) with the fast path (``DeviceBatches`` + ``train_ddpm``), cosine noise schedule, AdamW. At each
mark of ``--minutes`` (training time only; scoring is not counted) the model (its EMA when the recipe keeps one)
draws ``--n`` digits with DDIM in 50 steps and the course's digit metric scores them: confident share, classes
covered, Frechet distance to held-out real digits (real digits about 12-23 at n=200, noise about 600-700).
Results go to ``benchmarks/results/`` as JSON and print as a Markdown table.
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
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import EMAModel
from samplers import digit_unet  # noqa: E402  (benchmarks/ is the script's folder)

from course_utils.data import load_mnist
from course_utils.metrics import train_digit_scorer
from course_utils.training import DeviceBatches, sample_ddpm, train_ddpm

# name: (channels, EMA, prediction type, learning rate, batch size)
RECIPES = {
    "small-eps": ((16, 32), False, "epsilon", 2e-3, 64),  # chapter 2's cpu profile
    "wide-ema-eps": ((32, 64, 64), True, "epsilon", 2e-3, 64),  # the best of the samplers benchmark
    "wide-ema-v": ((32, 64, 64), True, "v_prediction", 2e-3, 64),  # the shipped digits-28's target
    "wide-ema-v-b128": ((32, 64, 64), True, "v_prediction", 3e-3, 128),
}


def score(model, scheduler, scorer, n: int, device) -> dict:
    """DDIM-50 samples of ``model`` scored by the digit metric."""
    ddim = DDIMScheduler.from_config(scheduler.config)
    x = (sample_ddpm(model.eval(), ddim, n, 50, device=device, seed=0) + 1) / 2
    model.train()
    return scorer.score(x)


def run(name: str, marks: list[float], n: int, device, images: torch.Tensor, scorer) -> list[dict]:
    """Train recipe ``name`` up to the last mark (minutes of training), scoring at each mark."""
    channels, use_ema, target, lr, batch = RECIPES[name]
    torch.manual_seed(0)
    model = digit_unet(channels).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=target)
    batches = DeviceBatches(images, batch, device, flip=False, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    ema = EMAModel(model.parameters(), decay=0.999, use_ema_warmup=True) if use_ema else None
    generator = torch.Generator(device).manual_seed(0)
    rows, trained, epochs, losses = [], 0.0, 0, []
    for mark in marks:
        while trained < mark * 60:
            start = time.perf_counter()
            losses += train_ddpm(model, scheduler, batches, 1, lr, device, generator, fast=True, optimizer=optimizer,
                                 ema=ema, progress=False)
            trained += time.perf_counter() - start
            epochs += 1
        judged = copy.deepcopy(model)
        if ema is not None:
            ema.copy_to(judged.parameters())
        rows.append({"recipe": name, "minutes": round(trained / 60, 2), "epochs": epochs, "loss": losses[-1],
                     **score(judged, scheduler, scorer, n, device)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), help=f"some of: {', '.join(RECIPES)}")
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 4], help="training minutes to score at")
    p.add_argument("--n", type=int, default=200, help="samples per score")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()
    bad = [f"--recipes {r}: not a recipe; choose from {', '.join(RECIPES)}" for r in args.recipes if r not in RECIPES]
    bad += [f"--minutes {m}: must be above 0" for m in args.minutes if m <= 0]
    bad += [f"--n {args.n}: must be at least 2"] if args.n < 2 else []
    if bad:
        p.exit(2, "".join(f"error: {line}\n" for line in bad))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = load_mnist(train=True, signed=True)
    images = torch.stack([source.dataset[i][0] for i in range(len(source.dataset))])
    uint8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    scorer = train_digit_scorer()
    rows = [r for name in args.recipes for r in run(name, sorted(args.minutes), args.n, device, uint8, scorer)]
    record = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "machine": f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}",
        "data": source.description, "recipes": {k: RECIPES[k] for k in args.recipes}, "n": args.n, "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cpu_recipe-{device.type}-{record['date']}.json"
    path.with_suffix(".tmp").write_text(json.dumps(record, indent=2, default=list))
    path.with_suffix(".tmp").replace(path)
    print("| recipe | U-Net | EMA | target | lr | batch | minutes | epochs | confident | classes | Frechet |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        channels, use_ema, target, lr, batch = RECIPES[r["recipe"]]
        print(f"| {r['recipe']} | {channels} | {'yes' if use_ema else 'no'} | {target} | {lr:g} | {batch} | "
              f"{r['minutes']:.1f} | {r['epochs']} | {r['confident']:.0%} | {r['classes']} | {r['frechet']:.1f} |")
    print("written to", path)


if __name__ == "__main__":
    main()
