"""Chapter 3's training, the published way and the course's fast way, side by side in one process.

    python benchmarks/train_speed.py                      # default model and sizes for this device
    python benchmarks/train_speed.py --model full --epochs 500 --batch-size 512 --only fast   # the 60-s goal

(a) "published": DataLoader + set_transform (PIL decode, resize, flip, ToTensor every batch), fp32, and a
    ``loss.item()`` every step, as in the original notebook;
(b) "fast": images decoded once into a uint8 tensor on the device, flips on the device, no host sync in
    the loop, bf16 autocast + TF32 + channels_last + fused AdamW on CUDA (``--compile`` adds torch.compile).

Both train the same UNet from the same initial weights on the same images. Reported: images/s (after a
warm-up epoch), the ratio, the time to reach a loss both runs reach, and on CUDA the share of the GPU's peak
bf16 FLOP/s. Results go to ``benchmarks/results/`` as JSON and print as a Markdown row.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from datetime import date
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch.utils.data import DataLoader

from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse
from course_utils.data import DeviceBatches, decode_images, load_butterflies, with_preprocessing
from course_utils.diffusion import make_unet, train_ddpm
from course_utils.files import write_text_atomic

MODELS = {  # name: (channels, layers_per_block, attention levels)
    "full": ((64, 128, 128, 256), 2, 2),  # chapter 3's published model, 32 px
    "cpu": ((16, 32, 64), 1, 1),  # chapter 3's cpu-profile model
}


def published_epoch(model, scheduler, loader, optimizer, device) -> tuple[float, list[float]]:
    """One epoch of the original loop: fp32, a ``.item()`` per step. Returns (seconds, losses)."""
    losses, start = [], time.perf_counter()
    for batch in loader:
        clean = batch["images"].to(device)
        noise = torch.randn(clean.shape).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),)).long().to(device)
        loss = F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return time.perf_counter() - start, losses


def run_published(model, scheduler, dataset, args, device) -> dict:
    """Train with the published loop; per-epoch mean loss and wall time."""
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.to(device).train()
    epochs = []
    for _ in range(args.epochs):
        seconds, losses = published_epoch(model, scheduler, loader, optimizer, device)
        epochs.append({"seconds": seconds, "loss": sum(losses) / len(losses)})
    return {"epochs": epochs}


def run_fast(model, scheduler, images, args, device) -> dict:
    """Train with the fast path, one ``train_ddpm`` call per epoch (it syncs once per epoch, as it would anyway)."""
    model.to(device)
    batches = DeviceBatches(images, args.batch_size, device, flip=True, seed=0)
    generator = torch.Generator(device).manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=device.type == "cuda")
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        (loss,) = train_ddpm(model, scheduler, batches, 1, args.lr, device, generator, fast=True,
                             compile=args.compile, optimizer=optimizer)
        epochs.append({"seconds": time.perf_counter() - start, "loss": loss})
    return {"epochs": epochs}


def flops_per_image(model, scheduler, size: int, device) -> float:
    """Forward + backward FLOPs of one training image, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).to(device)
    x = torch.randn(4, 3, size, size, device=device)
    t = torch.randint(0, 1000, (4,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(model(x, t).sample, x).backward()
    return counter.get_total_flops() / 4


def summarise(result: dict, n_images: int, target: float) -> dict:
    """images/s after the first (warm-up) epoch, and the wall time until the epoch loss first reaches ``target``."""
    epochs = result["epochs"]
    steady = epochs[1:] or epochs
    result["images_per_s"] = n_images * len(steady) / sum(e["seconds"] for e in steady)
    elapsed = 0.0
    result["seconds_to_target"] = None
    for e in epochs:
        elapsed += e["seconds"]
        if e["loss"] <= target:
            result["seconds_to_target"] = elapsed
            break
    result["total_seconds"] = sum(e["seconds"] for e in epochs)
    result["final_loss"] = epochs[-1]["loss"]
    return result


def main() -> None:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(MODELS), default="full" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=INT, default=1000, help="training images (butterflies)")
    p.add_argument("--size", type=INT, default=32, help="image size in pixels")
    p.add_argument("--epochs", type=INT, default=None, help="default: 20 on CUDA, 4 on CPU")
    p.add_argument("--batch-size", type=INT, default=64)
    p.add_argument("--lr", type=FLOAT, default=4e-4)
    p.add_argument("--compile", action="store_true", help="torch.compile the model in the fast path")
    p.add_argument("--only", choices=["published", "fast"], default=None, help="run one path only")
    p.add_argument("--target-loss", type=FLOAT, default=None, help="default: the larger of the two final losses")
    p.add_argument("--peak-tflops", type=FLOAT, default=989.0, help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args, problems = parse(p)
    exit_on_problems(errors(problems))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.epochs = args.epochs or (20 if device.type == "cuda" else 4)

    source = load_butterflies(n_synthetic=args.images)
    dataset = source.dataset.select(range(min(args.images, len(source.dataset))))
    n = len(dataset)
    images = decode_images(dataset["image"], args.size)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    torch.manual_seed(0)
    channels, layers, attention = MODELS[args.model]
    initial = make_unet(args.size, channels, layers, attention)
    results = {}
    if args.only in (None, "published"):
        results["published"] = run_published(copy.deepcopy(initial), scheduler,
                                             with_preprocessing(dataset, args.size), args, device)
    if args.only in (None, "fast"):
        results["fast"] = run_fast(copy.deepcopy(initial), scheduler, images, args, device)
    target = args.target_loss or max(r["epochs"][-1]["loss"] for r in results.values())
    for r in results.values():
        summarise(r, n, target)
    flops = flops_per_image(initial, scheduler, args.size, device)
    record = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "data": source.description, "model": args.model, "parameters": sum(p.numel() for p in initial.parameters()),
        "size": args.size, "images": n, "epochs": args.epochs, "batch_size": args.batch_size,
        "compile": args.compile, "target_loss": target, "gflop_per_image": flops / 1e9, "results": results,
    }
    if "fast" in results and device.type == "cuda":
        record["share_of_peak"] = flops * results["fast"]["images_per_s"] / (args.peak_tflops * 1e12)
    if len(results) == 2:
        record["speedup"] = results["fast"]["images_per_s"] / results["published"]["images_per_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    setting = "-".join([f"{args.epochs}ep", f"b{args.batch_size}"] + ["compile"] * args.compile
                       + ([args.only] if args.only else []))
    path = args.out / f"train_speed-{device.type}-{args.model}-{setting}-{record['date']}.json"
    write_text_atomic(path, json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "results"}, indent=2))
    for name, r in results.items():
        to_target = f"{r['seconds_to_target']:.1f} s" if r["seconds_to_target"] is not None else "not reached"
        print(f"| {record['device']} | {name} | {r['images_per_s']:.0f} img/s | final loss {r['final_loss']:.4f} "
              f"| to loss {target:.4f}: {to_target} | total {r['total_seconds']:.1f} s |")
    print("written to", path)


if __name__ == "__main__":
    main()
