"""Train a ControlNet for the course's tiny Stable Diffusion on posed butterflies and their silhouettes (chapter 11).

    python -m course_utils.train_controlnet --output_dir tiny-controlnet
    accelerate launch -m course_utils.train_controlnet --output_dir tiny-controlnet
    python -m course_utils.train_controlnet --output_dir tiny-controlnet --resume_from_checkpoint latest

The recipe of diffusers' ``examples/controlnet/train_controlnet.py``, small: the ControlNet starts as a copy of
the text-to-image U-Net's encoder (``ControlNetModel.from_unet``), its zero convolutions making it add nothing at
first; the VAE, text encoder and U-Net stay frozen and only the ControlNet learns to predict, with the U-Net, the
noise added to the latents of a drawing, given its caption and its control image (the silhouette, white on
black: ``course_utils.controlnet.posed_butterfly``). Every ``--validation_steps`` it samples held-out controls
and logs their silhouette IoU (``course_utils.controlnet.silhouette_iou``), the curve of how fast the control is
learned. Flags keep diffusers' names where they mean the same.

The result: ``<output_dir>/controlnet`` (``ControlNetModel.from_pretrained`` loads it) and
``training_log.json`` (losses, IoU by step, time, device). Resumable: ``--checkpointing_steps`` saves the whole
state (ControlNet, optimizer, LR schedule, step) into ``checkpoints/checkpoint-<step>``, whole or not at all;
``--resume_from_checkpoint latest`` continues from the newest, and since each batch is drawn from a generator
seeded by its step, a resumed run ends with the same weights as an uninterrupted one. Every flag is checked
before anything is drawn or built: one ``error:`` line per problem, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from . import tiny_sd
from .controlnet import controlnet_loss, controlnet_pipeline, posed_butterflies, silhouette_iou
from .data import butterfly_attributes
from .files import atomic_folder

CHOICES = {"lr_scheduler": ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                            "constant_with_warmup"),
           "mixed_precision": ("no", "fp16", "bf16")}
HELD_OUT = 300_000  # validation controls come from drawings from this index on, never in training
CHECKPOINTS = "checkpoints"


def default_base() -> Path:
    """The shipped ``tiny-sd-butterflies`` pipeline's folder."""
    return Path(__file__).resolve().parent / "pretrained" / "tiny-sd-butterflies"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_utils.train_controlnet", description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", type=Path, required=True, help="where the ControlNet, checkpoints and log go")
    p.add_argument("--pretrained_model_name_or_path", type=Path, default=default_base(),
                   help="the text-to-image pipeline folder whose U-Net the ControlNet copies (default: the shipped "
                   "tiny-sd-butterflies)")
    p.add_argument("--num_images", type=int, default=3000, help="posed butterflies drawn for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_train_steps", type=int, default=800)
    p.add_argument("--train_batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--lr_scheduler", default="constant_with_warmup",
                   help=f"one of {', '.join(CHOICES['lr_scheduler'])}")
    p.add_argument("--lr_warmup_steps", type=int, default=50)
    p.add_argument("--mixed_precision", default="no", help="no, fp16 or bf16")
    p.add_argument("--validation_steps", type=int, default=50, help="log the held-out silhouette IoU this often")
    p.add_argument("--num_validation_images", type=int, default=16)
    p.add_argument("--validation_inference_steps", type=int, default=20, help="DDIM steps of a validation sample")
    p.add_argument("--checkpointing_steps", type=int, default=200)
    p.add_argument("--checkpoints_total_limit", type=int, default=1)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    return p


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the flags, one line each (nothing is drawn, built or written)."""
    problems = []
    for flag in ("num_images", "max_train_steps", "train_batch_size", "validation_steps", "num_validation_images",
                 "validation_inference_steps", "checkpointing_steps", "checkpoints_total_limit"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag} {getattr(args, flag)}: must be at least 1")
    if args.lr_warmup_steps < 0:
        problems.append(f"--lr_warmup_steps {args.lr_warmup_steps}: must be 0 or more")
    if not 0 < args.learning_rate < 1:
        problems.append(f"--learning_rate {args.learning_rate}: must be between 0 and 1, e.g. 1e-3")
    for flag in CHOICES:
        if getattr(args, flag) not in CHOICES[flag]:
            problems.append(f"--{flag} {getattr(args, flag)}: choose one of {', '.join(CHOICES[flag])}")
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        problems.append("--mixed_precision fp16: needs a GPU; use no (or bf16) on a CPU")
    base = args.pretrained_model_name_or_path
    if not (base / "model_index.json").is_file() or not (base / "unet" / "config.json").is_file():
        problems.append(f"--pretrained_model_name_or_path {base}: not a Stable Diffusion pipeline folder (no "
                        "model_index.json and unet/); pass one saved by course_utils.train_text_to_image")
    out = args.output_dir
    if out.exists() and not out.is_dir():
        problems.append(f"--output_dir {out}: is a file; pass a folder (it is created if missing)")
    elif args.resume_from_checkpoint is None and out.is_dir() and any(p.name[0] != "." for p in out.iterdir()):
        problems.append(f"--output_dir {out}: holds another run; pass --resume_from_checkpoint latest to continue "
                        "it, or a new folder")
    elif args.resume_from_checkpoint not in (None, "latest"):
        ckpt = Path(args.resume_from_checkpoint)
        if not (ckpt / "course_step.json").is_file():
            problems.append(f"--resume_from_checkpoint {ckpt}: not a checkpoint of this script (want "
                            f"{out}/{CHECKPOINTS}/checkpoint-N, or latest)")
        elif ckpt.resolve().parent.parent != out.resolve():
            problems.append(f"--resume_from_checkpoint {ckpt}: belongs to another run; pass that run's folder as "
                            "--output_dir")
    return problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    problems = check_args(args)
    if problems:
        if int(os.environ.get("RANK", 0)) == 0:  # printed once, by the first process
            print("\n".join(f"error: {line}" for line in problems), file=sys.stderr)
        sys.exit(2)
    return args


# ---- Checkpoints: whole or not at all ----------------------------------------------------------------------


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator: Accelerator, folder: Path, step: int, total_limit: int, seconds: float) -> None:
    """The whole training state into ``checkpoint-<step>``: written under a temporary name, then renamed."""
    final, tmp = folder / f"checkpoint-{step}", folder / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "course_step.json").write_text(json.dumps({"step": step, "seconds": seconds}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(folder)[:-total_limit]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _write_log(accelerator: Accelerator, log: dict, file: Path) -> None:
    if accelerator.is_main_process:
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps(log, indent=1))
        tmp.replace(file)


# ---- The run ----------------------------------------------------------------------------------------------


def batch_generator(seed: int, step: int, process: int) -> torch.Generator:
    """The random source of one batch: seeded by the step and process, so a resumed run repeats it."""
    return torch.Generator().manual_seed((seed * 10_000_019 + step) * 64 + process)


@torch.no_grad()
def validation_iou(pipeline, controls: torch.Tensor, prompts: list[str], steps: int, seed: int) -> float:
    """Mean silhouette IoU of samples of the held-out ``controls`` (guidance 5, DDIM, a fixed seed)."""
    x = tiny_sd.generate(pipeline, prompts, guidance_scale=5.0, steps=steps, seed=seed, image=controls)
    return round(float(silhouette_iou(x, controls).mean()), 4)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    from diffusers import ControlNetModel, DDPMScheduler, StableDiffusionPipeline

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    accelerator.wait_for_everyone()
    log_file = out / "training_log.json"
    found = list_checkpoints(out / CHECKPOINTS) if args.resume_from_checkpoint == "latest" else []
    checkpoint = Path(args.resume_from_checkpoint) if args.resume_from_checkpoint not in (None, "latest") else (
        found[-1] if found else None)
    if args.resume_from_checkpoint and (out / "controlnet" / "config.json").is_file() and checkpoint is None:
        accelerator.print(f"{out} holds a finished run: nothing to resume")
        return out

    # Frozen parts: the text-to-image pipeline. Trainable: the ControlNet, a copy of its U-Net's encoder.
    base = StableDiffusionPipeline.from_pretrained(args.pretrained_model_name_or_path, dtype=torch.float32,
                                                   safety_checker=None, use_safetensors=True)
    vae, text_encoder, tokenizer, unet = base.vae, base.text_encoder, base.tokenizer, base.unet
    for frozen in (vae, text_encoder, unet):
        frozen.requires_grad_(False).eval().to(accelerator.device)
    halvings = len(vae.config.block_out_channels) - 1  # the control image is at pixel size, the latents smaller
    torch.manual_seed(args.seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 128)[:halvings + 1])
    noise_scheduler = DDPMScheduler.from_config(base.scheduler.config)

    size = vae.config.sample_size
    accelerator.print(f"drawing {args.num_images} posed butterflies at {size} px ...")
    images, controls = posed_butterflies(range(args.num_images), size=size, seed=args.seed)
    with torch.no_grad():  # the drawings' latent distributions, once: each step samples from them
        posteriors = [vae.encode(b.to(accelerator.device) * 2 - 1).latent_dist for b in images.split(250)]
    mean, std = torch.cat([p.mean for p in posteriors]), torch.cat([p.std for p in posteriors])
    attrs = [butterfly_attributes(i, args.seed) for i in range(args.num_images)]
    held = range(HELD_OUT, HELD_OUT + args.num_validation_images)
    val_controls = posed_butterflies(held, size=size, seed=args.seed)[1]
    val_prompts = [butterfly_attributes(i, args.seed).caption for i in held]

    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=args.learning_rate, weight_decay=1e-2)
    n = accelerator.num_processes  # a prepared schedule steps once per process per update
    schedule = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps * n,
                             num_training_steps=args.max_train_steps * n)
    controlnet, optimizer, schedule = accelerator.prepare(controlnet, optimizer, schedule)
    step, seconds = 0, 0.0
    log = json.loads(log_file.read_text()) if checkpoint is not None and log_file.is_file() else {}
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        about = json.loads((checkpoint / "course_step.json").read_text())
        step, seconds = about["step"], about["seconds"]
        accelerator.print(f"resumed at step {step} from {checkpoint}")
    log["losses"] = [row for row in log.get("losses", []) if row[0] <= step]
    log["iou"] = [row for row in log.get("iou", []) if row[0] <= step]
    clock = time.perf_counter() - seconds

    def validate() -> None:
        pipe = controlnet_pipeline(base, accelerator.unwrap_model(controlnet).eval())
        log["iou"].append([step, validation_iou(pipe, val_controls, val_prompts, args.validation_inference_steps,
                                                args.seed)])
        controlnet.train()

    if step == 0:
        validate()  # step 0: the zero convolutions add nothing yet
    bar = tqdm(total=args.max_train_steps, initial=step, desc="ControlNet",
               disable=not accelerator.is_local_main_process)
    running: list[float] = []
    controlnet.train()
    while step < args.max_train_steps:
        g = batch_generator(args.seed, step, accelerator.process_index)
        rng = np.random.default_rng(g.initial_seed())
        idx = torch.randint(len(mean), (args.train_batch_size,), generator=g)
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g).to(mean.device))
        latents = latents * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g).to(latents.device)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (len(idx),), generator=g).to(latents.device)
        prompts = [tiny_sd.random_caption(attrs[i].wing, attrs[i].background, rng) for i in idx.tolist()]
        with torch.no_grad():
            text = text_encoder(tiny_sd.token_ids(tokenizer, prompts).to(latents.device))[0]
        with accelerator.autocast():
            loss = controlnet_loss(controlnet, unet, noise_scheduler, latents, text, controls[idx].to(latents.device),
                                   noise, t)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(controlnet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        step += 1
        bar.update(1)
        running.append(loss.item())
        if step == 1 or step % 50 == 0 or step == args.max_train_steps:
            log["losses"].append([step, round(float(np.mean(running)), 5)])
            bar.set_postfix(loss=log["losses"][-1][1], iou=log["iou"][-1][1])
            running.clear()
        if step % args.validation_steps == 0 or step == args.max_train_steps:
            validate()
        if step % args.checkpointing_steps == 0 and step < args.max_train_steps:
            log["seconds"] = round(time.perf_counter() - clock, 1)
            _write_log(accelerator, log, log_file)
            save_checkpoint(accelerator, out / CHECKPOINTS, step, args.checkpoints_total_limit, log["seconds"])
    bar.close()

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    log.update(seconds=round(time.perf_counter() - clock, 1), args={k: str(v) for k, v in vars(args).items()},
               device=device, torch=torch.__version__, date=str(date.today()), processes=accelerator.num_processes,
               parameters=sum(p.numel() for p in controlnet.parameters()))
    if accelerator.is_main_process:
        with atomic_folder(out / "controlnet", replace=True) as tmp:
            accelerator.unwrap_model(controlnet).save_pretrained(tmp, safe_serialization=True)
        _write_log(accelerator, log, log_file)  # the run is done once the ControlNet is saved
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    accelerator.wait_for_everyone()
    return out


def cli() -> None:
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
