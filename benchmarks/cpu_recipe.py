"""Which training recipe gives the best digits and butterflies per CPU-minute? Train each for a budget.

    python benchmarks/cpu_recipe.py                          # every recipe, scored at 2 and 4 minutes
    python benchmarks/cpu_recipe.py --recipes wide-ema-v --minutes 2 4 8
    python benchmarks/cpu_recipe.py --recipes ch3-v-cos --steps 160 320 480   # by optimizer steps

``--minutes`` marks count training time, which a busy machine stretches; ``--steps`` marks count optimizer steps
(whole epochs, up to the first epoch that reaches the mark), so recipes can be compared on a shared machine and the
steps converted to minutes with the images/s measured on a quiet one. The "ch3-..." recipes train on chapter 3's
own data (its ``n_images`` drawn butterflies, drawn at 64 px and resized to 32, as the chapter loads them) and add
rows for held-out drawings and uniform noise scored the same way, so a table carries its own scale.

Digit recipes train a 28x28 U-Net (no attention) on the course's digits (MNIST online, scikit-learn's digits
offline); butterfly recipes ("bfly-...") a 32x32 U-Net on 5,000 drawn butterflies (random flips). Both use the
fast path (``DeviceBatches`` + ``train_ddpm``), cosine noise schedule, AdamW. At each mark of ``--minutes``
(training time only; scoring is not counted) the model (its EMA when the recipe keeps one) draws ``--n`` images
with DDIM in 50 steps and the course's metric scores them: confident share, classes (wing colours) covered,
Frechet distance to held-out real digits or drawings (digits: real about 12-23 at n=200, noise about 600-700;
butterflies: drawings about 45, noise about 3,950). Results go to ``benchmarks/results/`` as JSON and print as a
Markdown table.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import EMAModel

from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse, typed
from course_utils.data import DeviceBatches, decode_images, load_butterflies, load_mnist, synthetic_butterfly
from course_utils.diffusion import make_unet, train_ddpm
from course_utils.files import write_text_atomic
from course_utils.metrics import drawn_butterflies, train_butterfly_scorer, train_digit_scorer
from course_utils.sampling import sample_ddpm


@dataclass(frozen=True)
class Recipe:
    """One way to train: the U-Net, the target, the optimizer and its schedule."""

    channels: tuple[int, ...]
    ema: bool = True
    target: str = "v_prediction"
    lr: float = 2e-3
    batch: int = 64
    layers_per_block: int = 1
    attention: int = 0  # levels with self-attention, deepest first
    warmup: int = 0  # optimizer steps of linear warm-up
    decay: bool = False  # cosine decay of the learning rate to 0 at the last mark
    snr_gamma: float | None = None  # min-SNR loss weighting
    data: str = "digits"  # or "butterflies" (5,000 drawn at 32 px), or "chapter" (chapter 3's images)
    n_images: int = 1000  # distinct training images ("chapter" only)


RECIPES = {
    "small-eps": Recipe((16, 32), ema=False, target="epsilon"),  # chapter 2's cpu profile
    "wide-ema-eps": Recipe((32, 64, 64), target="epsilon"),  # the best of the samplers benchmark
    "wide-ema-v": Recipe((32, 64, 64)),  # the shipped digits-28's target
    "wide-ema-v-b128": Recipe((32, 64, 64), lr=3e-3, batch=128),
    "narrow-ema-v": Recipe((16, 32, 64)),  # half the channels at full resolution: ~3x cheaper steps
    "wide-ema-v-decay": Recipe((32, 64, 64), warmup=50, decay=True),
    "wide-ema-v-minsnr": Recipe((32, 64, 64), snr_gamma=5.0),
    "narrow-ema-v-decay-minsnr": Recipe((16, 32, 64), warmup=50, decay=True, snr_gamma=5.0),  # all three gains
    "bfly-eps": Recipe((16, 32, 64, 128), target="epsilon", lr=1e-3, attention=1, data="butterflies"),
    "bfly-v": Recipe((16, 32, 64, 128), lr=1e-3, attention=1, data="butterflies"),
    "bfly-v-decay": Recipe((16, 32, 64, 128), lr=2e-3, attention=1, warmup=100, decay=True, data="butterflies"),
    # chapter 3's cpu profile: its former recipe, then four levels (attention at 4x4) with warm-up + cosine decay
    "ch3-old": Recipe((16, 32, 64), lr=1e-3, attention=1, data="chapter"),
    "ch3-v-cos": Recipe((16, 32, 64, 128), lr=2e-3, attention=1, warmup=50, decay=True, data="chapter"),
    "ch3-v-cos-3e-3": Recipe((16, 32, 64, 128), lr=3e-3, attention=1, warmup=50, decay=True, data="chapter"),
    "ch3-v-cos-b32": Recipe((16, 32, 64, 128), lr=2e-3, batch=32, attention=1, warmup=50, decay=True, data="chapter"),
    "ch3-v-cos-300": Recipe((16, 32, 64, 128), lr=2e-3, attention=1, warmup=50, decay=True, data="chapter",
                            n_images=300),
    "ch3-eps-cos": Recipe((16, 32, 64, 128), target="epsilon", lr=2e-3, attention=1, warmup=50, decay=True,
                          data="chapter"),
}
N_BUTTERFLIES = 5000


def score(model, scheduler, scorer, n: int, device) -> dict:
    """DDIM-50 samples of ``model`` scored by the metric of its data."""
    ddim = DDIMScheduler.from_config(scheduler.config)
    x = (sample_ddpm(model.eval(), ddim, n, 50, device=device, seed=0) + 1) / 2
    model.train()
    return scorer.score(x)


def run(name: str, marks: list[float], n: int, device, images: torch.Tensor, scorer, by_steps: bool = False
        ) -> list[dict]:
    """Train recipe ``name`` up to the last mark (minutes of training, or optimizer steps), scoring at each mark."""
    r = RECIPES[name]
    torch.manual_seed(0)
    model = make_unet(images.shape[-1], r.channels, r.layers_per_block, r.attention, in_channels=images.shape[1])
    model.to(device)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=r.target)
    batches = DeviceBatches(images, r.batch, device, flip=r.data == "butterflies", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=r.lr)
    plan = {"steps": marks[-1] if by_steps else math.inf}  # optimizer steps of the budget (minutes: estimated)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / r.warmup) if r.warmup else 1.0
        return warm * (0.5 * (1 + math.cos(math.pi * min(1.0, step / plan["steps"]))) if r.decay else 1.0)

    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    ema = EMAModel(model.parameters(), decay=0.999, use_ema_warmup=True) if r.ema else None
    generator = torch.Generator(device).manual_seed(0)
    rows, trained, epochs, losses = [], 0.0, 0, []
    for mark in marks:
        while (epochs * len(batches) < mark) if by_steps else (trained < mark * 60):
            start = time.perf_counter()
            losses += train_ddpm(model, scheduler, batches, 1, r.lr, device, generator, fast=True, optimizer=optimizer,
                                 ema=ema, progress=False, lr_scheduler=lr_scheduler, snr_gamma=r.snr_gamma)
            trained += time.perf_counter() - start
            epochs += 1
            if not by_steps:
                plan["steps"] = marks[-1] * 60 / trained * epochs * len(batches)
        judged = copy.deepcopy(model)
        if ema is not None:
            ema.copy_to(judged.parameters())
        rows.append({"recipe": name, "minutes": round(trained / 60, 2), "epochs": epochs,
                     "steps": epochs * len(batches), "images_per_s": round(epochs * len(images) / trained, 1),
                     "loss": losses[-1],
                     **score(judged, scheduler, scorer, n, device)})
        print(rows[-1], flush=True)
    return rows


def chapter_images(n_images: int) -> torch.Tensor:
    """Chapter 3's offline training images: ``n_images`` drawn butterflies (64 px), decoded once at 32 px, uint8."""
    return decode_images(load_butterflies(n_synthetic=n_images, offline=True).dataset["image"], 32)


def training_data(kind: str, n_images: int = 1000) -> tuple[torch.Tensor, object, str]:
    """uint8 training images (N, C, H, W), the metric that scores samples, and a description of the data."""
    if kind == "chapter":
        return chapter_images(n_images), train_butterfly_scorer(), f"chapter 3's {n_images} drawn butterflies, 32x32"
    if kind == "butterflies":
        images = (drawn_butterflies(range(N_BUTTERFLIES)) * 255).round().to(torch.uint8)
        return images, train_butterfly_scorer(), f"{N_BUTTERFLIES} drawn butterflies, 32x32"
    source = load_mnist(train=True, signed=True)
    images = torch.stack([source.dataset[i][0] for i in range(len(source.dataset))])
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8), train_digit_scorer(), source.description


def main() -> None:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    p.add_argument("--minutes", type=FLOAT, nargs="+", default=[2, 4], help="training minutes to score at")
    p.add_argument("--steps", type=INT, nargs="+", help="optimizer steps to score at (instead of --minutes)")
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="samples per score")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args, problems = parse(p)
    problems += [f"--minutes {m}: must be above 0" for m in args.minutes if typed(m) and m <= 0]
    problems += [f"--steps {m}: must be above 0" for m in args.steps or [] if typed(m) and m <= 0]
    exit_on_problems(errors(problems))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, data, marks = [], {}, sorted(args.steps or args.minutes)
    for kind in dict.fromkeys((RECIPES[name].data, RECIPES[name].n_images) for name in args.recipes):
        images, scorer, data[f"{kind[0]}-{kind[1]}"] = training_data(*kind)
        if kind[0] == "chapter":  # the scale: held-out drawings (from index 100,000) and uniform noise
            drawings = decode_images([synthetic_butterfly(100_000 + i, 64) for i in range(args.n)], 32)
            for label, x in (("drawings", drawings.float() / 255), ("uniform noise", torch.rand(args.n, 3, 32, 32))):
                rows.append({"recipe": label, **scorer.score(x)})
                print(rows[-1], flush=True)
        for name in (name for name in args.recipes if (RECIPES[name].data, RECIPES[name].n_images) == kind):
            rows += run(name, marks, args.n, device, images, scorer, by_steps=args.steps is not None)
    record = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "machine": f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}",
        "data": data, "recipes": {k: asdict(RECIPES[k]) for k in args.recipes}, "n": args.n, "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    unit = "steps" if args.steps else "min"
    path = args.out / f"cpu_recipe-{device.type}-{record['date']}-{'-'.join(args.recipes)}-{unit}.json"
    write_text_atomic(path, json.dumps(record, indent=2, default=list))
    columns = "recipe U-Net EMA target lr batch schedule images minutes steps confident classes Frechet".split()
    print("| " + " | ".join(columns) + " |", "|---" * len(columns) + "|", sep="\n")
    for row in rows:
        if row["recipe"] not in RECIPES:  # a reference row
            print(f"| {row['recipe']} |" + " |" * 11 + f" {row['confident']:.0%} | {row['wing_colours']} | "
                  f"{row['frechet']:.1f} |")
            continue
        r = RECIPES[row["recipe"]]
        net = f"{r.channels}" + (f", attention x{r.attention}" if r.attention else "")
        parts = [f"warm-up {r.warmup}"] * bool(r.warmup) + ["cosine decay"] * r.decay
        parts += [f"min-SNR {r.snr_gamma:g}"] if r.snr_gamma is not None else []
        schedule = ", ".join(parts) or "constant"
        classes = row.get("classes", row.get("wing_colours"))
        print(f"| {row['recipe']} | {net} | {'yes' if r.ema else 'no'} | {r.target} | {r.lr:g} | {r.batch} | "
              f"{schedule} | {r.n_images if r.data == 'chapter' else ''} | {row['minutes']:.1f} | "
              f"{row.get('steps', '')} | {row['confident']:.0%} | {classes} | "
              f"{row['frechet']:.1f} |")
    print("written to", path)


if __name__ == "__main__":
    main()
