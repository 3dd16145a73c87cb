"""Train a digit model for a fixed wall-clock budget, then compare samplers: time and the course's metric.

    python benchmarks/samplers.py                          # 5 minutes of training, then the sampler table
    python benchmarks/samplers.py --train-seconds 60 --n 100   # a quick look

Training uses the course's fast path (``DeviceBatches`` + ``train_ddpm``) on the digits (MNIST online,
scikit-learn's digits offline), cosine schedule, epsilon prediction. Each sampler then generates the same
number of images from the same model; the digit metric (``course_utils.metrics``) scores them: confident
share, classes covered, Frechet distance to held-out real digits (lower is better). Results go to
``benchmarks/results/`` as JSON and print as a Markdown table.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import date
from pathlib import Path

import diffusers
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.training_utils import EMAModel

from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse
from course_utils.data import DeviceBatches, data_dir, load_mnist
from course_utils.diffusion import train_ddpm
from course_utils.files import atomic_folder, write_text_atomic
from course_utils.metrics import train_digit_scorer

# The cosine schedule's last timestep has alpha_bar ~ 2e-9: DPM-Solver's data prediction there divides by
# sqrt(alpha_bar) and its first step blows up. With the default "linspace" spacing the solver starts at
# t = 999; "leading" spacing starts it at t = 1000 - 1000/steps, where the schedule is well conditioned
# (measured: FD 99 vs 458 at 20 steps; clipping lambda at -5.1 or thresholding helped less, FD 138).
# The last row keeps the default to show what happens without it.
DPM_COSINE = {"algorithm_type": "dpmsolver++", "timestep_spacing": "leading"}

SAMPLERS = [  # (name, scheduler class, extra config, steps)
    ("DDPM", DDPMScheduler, {}, 1000), ("DDPM", DDPMScheduler, {}, 100), ("DDPM", DDPMScheduler, {}, 50),
    ("DDIM", DDIMScheduler, {}, 50), ("DDIM", DDIMScheduler, {}, 20), ("DDIM", DDIMScheduler, {}, 10),
    *(("DPM-Solver++", DPMSolverMultistepScheduler, DPM_COSINE, steps) for steps in (50, 20, 10)),
    ("DPM-Solver++ (default spacing)", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}, 20),
]


def digit_unet(channels: tuple[int, ...]) -> UNet2DModel:
    """A timestep-conditioned U-Net for 28x28 digits, no attention."""
    blocks = len(channels)
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=channels,
                       norm_num_groups=8, down_block_types=("DownBlock2D",) * blocks,
                       up_block_types=("UpBlock2D",) * blocks)


@torch.no_grad()
def generate(model, scheduler, n: int, steps: int, device, batch: int = 250) -> torch.Tensor:
    """``n`` images in [0, 1] sampled with ``steps`` steps, seeded, in batches."""
    scheduler.set_timesteps(steps)
    generator = torch.Generator(device).manual_seed(0)
    out = []
    for start in range(0, n, batch):
        x = torch.randn((min(batch, n - start), 1, 28, 28), generator=generator, device=device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            prediction = model(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(prediction, t, x, generator=generator).prev_sample
        out.append(((x.clamp(-1, 1) + 1) / 2).cpu())
    return torch.cat(out)


def main() -> None:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--train-seconds", type=FLOAT, default=300)
    p.add_argument("--channels", type=INT, nargs="+", default=[32, 64, 64])
    p.add_argument("--batch-size", type=INT, default=64)
    p.add_argument("--lr", type=FLOAT, default=2e-3)
    p.add_argument("--n", type=INT, default=200, help="images per sampler")
    p.add_argument("--retrain", action="store_true", help="train again even if a cached model exists")
    p.add_argument("--ema", action="store_true", help="keep an EMA of the weights (decay 0.999) and sample from it")
    p.add_argument("--quick", action="store_true", help="skip the slow rows (DDPM 1000 and 50 steps)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args, problems = parse(p)
    exit_on_problems(errors(problems))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    source = load_mnist(train=True, signed=True)
    images = torch.stack([source.dataset[i][0] for i in range(len(source.dataset))])
    uint8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    batches = DeviceBatches(uint8, args.batch_size, device, flip=False, seed=0)
    torch.manual_seed(0)
    model = digit_unet(tuple(args.channels)).to(device)
    train_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    channels = "-".join(map(str, args.channels))
    name = f"samplers-{device.type}-{channels}-{args.train_seconds:g}s{'-ema' if args.ema else ''}"
    cache = data_dir() / "benchmarks" / name
    if (cache / "model" / "config.json").is_file() and not args.retrain:
        model = UNet2DModel.from_pretrained(cache / "model").to(device)
        trained = json.loads((cache / "training.json").read_text())
        print(f"reusing the model trained earlier in {cache} (--retrain to train again)")
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=device.type == "cuda")
        generator = torch.Generator(device).manual_seed(0)
        ema = EMAModel(model.parameters(), decay=0.999, use_ema_warmup=True) if args.ema else None
        losses, start = [], time.perf_counter()
        while time.perf_counter() - start < args.train_seconds:
            losses += train_ddpm(model, train_scheduler, batches, 1, args.lr, device, generator, fast=True,
                                 optimizer=optimizer, ema=ema)
        if ema is not None:
            ema.copy_to(model.parameters())  # the averaged weights are the model from here on
        trained = {"train_seconds": time.perf_counter() - start, "epochs": len(losses),
                   "images_seen": len(losses) * len(uint8), "final_loss": losses[-1]}
        with atomic_folder(cache, replace=True) as tmp:
            model.save_pretrained(tmp / "model")
            (tmp / "training.json").write_text(json.dumps(trained))
    model.eval()

    scorer = train_digit_scorer()
    rows = [{"sampler": "real digits", "steps": 0, "seconds": 0.0, **scorer.score(scorer_reference(args.n))}]
    for sampler, cls, extra, steps in SAMPLERS:
        if args.quick and sampler == "DDPM" and steps in (1000, 50):
            continue
        scheduler = cls.from_config(train_scheduler.config, **extra)
        t0 = time.perf_counter()
        samples = generate(model, scheduler, args.n, steps, device)
        seconds = time.perf_counter() - t0
        rows.append({"sampler": sampler, "steps": steps, "seconds": seconds, **scorer.score(samples)})
        print(rows[-1], flush=True)
    noise = torch.rand(args.n, 1, 28, 28)
    rows.append({"sampler": "uniform noise", "steps": 0, "seconds": 0.0, **scorer.score(noise)})

    record = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "data": source.description, "channels": args.channels, "ema": args.ema, **trained,
        "n_per_sampler": args.n, "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}-{record['date']}.json"
    write_text_atomic(path, json.dumps(record, indent=2))
    print(f"trained {trained['train_seconds']:.0f} s, {trained['epochs']} epochs, final loss "
          f"{trained['final_loss']:.4f} on {record['device']}")
    print("| sampler | steps | seconds | confident | classes | Frechet |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['steps'] or ''} | {r['seconds']:.1f} | {r['confident']:.2f} "
              f"| {r['classes']:.0f} | {r['frechet']:.1f} |")
    print("written to", path)


def scorer_reference(n: int) -> torch.Tensor:
    """``n`` real training digits in [0, 1]: the best a sampler can do (the metric's reference is the test split)."""
    train = load_mnist(train=True).dataset
    return torch.stack([train[i][0] for i in range(min(n, len(train)))])


if __name__ == "__main__":
    main()
