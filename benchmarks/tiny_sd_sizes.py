"""How big can the tiny Stable Diffusion be on this machine? Time one training step of each part per image size.

    python benchmarks/tiny_sd_sizes.py                 # 32 and 64 px, the shipped U-Net widths and a wider one
    python benchmarks/tiny_sd_sizes.py --sizes 32 --repeats 5

For each image size the VAE (``tiny_sd.vae_config``: a quarter of the side in latents) and U-Nets of a few
widths on those latents run forward + backward + AdamW on random inputs, at the batch sizes the training
script uses (VAE 64, U-Net 128); the median of ``--repeats`` steps after one warm-up step. With the script's
default step counts (VAE 1,000, U-Net 2,500) this gives the training time a size costs. Results go to
``benchmarks/results/`` as JSON and print as a Markdown table.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel

from course_utils import tiny_sd
from course_utils.cli import INT, Parser, errors, exit_on_problems, parse, typed
from course_utils.files import write_text_atomic

WIDTHS = ((32, 64, 128), (64, 128, 128))  # the shipped U-Net, and twice as wide at the top


def step_seconds(model: torch.nn.Module, loss_fn, repeats: int) -> float:
    """Median seconds of one forward + backward + AdamW step (after a warm-up step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss_fn(model).backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=INT, nargs="+", default=[32, 64], help="image sizes (multiples of 8)")
    p.add_argument("--repeats", type=INT, default=3, check="at least 1", help="timed steps per measurement")
    p.add_argument("--vae_steps", type=INT, default=1000, check="at least 1")
    p.add_argument("--unet_steps", type=INT, default=2500, check="at least 1")
    args, problems = parse(p, argv)
    problems += [f"--sizes {s}: must be a multiple of 8, at least 16" for s in args.sizes
                 if typed(s) and (s < 16 or s % 8)]
    exit_on_problems(errors(problems))
    torch.manual_seed(0)
    rows = []
    for size in args.sizes:
        vae = AutoencoderKL(**tiny_sd.vae_config(size))
        x = torch.randn(64, 3, size, size)

        def vae_loss(m, x=x):
            posterior = m.encode(x).latent_dist
            return F.l1_loss(m.decode(posterior.sample()).sample, x) + 1e-6 * posterior.kl().mean()

        vae_s = step_seconds(vae, vae_loss, args.repeats)
        latent = size // 4
        for widths in WIDTHS:
            unet = UNet2DConditionModel(**{**tiny_sd.unet_config(latent), "block_out_channels": widths})
            z, text, t = torch.randn(128, 4, latent, latent), torch.randn(128, tiny_sd.MAX_LENGTH, 64), \
                torch.randint(1000, (128,))
            unet_s = step_seconds(unet, lambda m, z=z, text=text, t=t: m(z, t, encoder_hidden_states=text).sample
                                  .pow(2).mean(), args.repeats)
            rows.append(dict(
                image=size, latents=f"4x{latent}x{latent}", unet_widths=list(widths),
                vae_params=sum(q.numel() for q in vae.parameters()),
                unet_params=sum(q.numel() for q in unet.parameters()), vae_step_s=round(vae_s, 3),
                unet_step_s=round(unet_s, 3),
                training_minutes=round((vae_s * args.vae_steps + unet_s * args.unet_steps) / 60, 1)))
    device = f"CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"
    record = dict(date=str(date.today()), device=device, torch=torch.__version__, settings=vars(args), rows=rows)
    out = Path(__file__).parent / "results" / f"tiny_sd_sizes-{date.today()}.json"
    write_text_atomic(out, json.dumps(record, indent=1))
    print(f"{device}, torch {torch.__version__}, {date.today()}; "
          f"steps: VAE {args.vae_steps}, U-Net {args.unet_steps}\n")
    print("| image | latents | U-Net widths | VAE params | U-Net params | VAE step (b64) | U-Net step (b128) | "
          "training |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} px | {r['latents']} | {tuple(r['unet_widths'])} | {r['vae_params']:,} | "
              f"{r['unet_params']:,} | {r['vae_step_s']} s | {r['unet_step_s']} s | {r['training_minutes']} min |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
