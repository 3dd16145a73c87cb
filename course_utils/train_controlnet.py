"""Train spatial control for the course's tiny Stable Diffusion on posed butterflies and their silhouettes (chapter 11).

    python -m course_utils.train_controlnet --output_dir tiny-controlnet
    python -m course_utils.train_controlnet --design depth --output_dir tiny-depth
    accelerate launch -m course_utils.train_controlnet --output_dir tiny-controlnet
    python -m course_utils.train_controlnet --output_dir tiny-controlnet --resume_from_checkpoint latest

Two designs, chosen by ``--design``:

- ``controlnet`` (default): the recipe of diffusers' ``examples/controlnet/train_controlnet.py``, small. The
  ControlNet starts as a copy of the text-to-image U-Net's encoder (``ControlNetModel.from_unet``), its zero
  convolutions making it add nothing at first; the VAE, text encoder and U-Net stay frozen and only the ControlNet
  learns to predict, with the U-Net, the noise added to the latents of a drawing, given its caption and its
  control image (the silhouette, white on black: ``course_utils.controlnet.posed_butterfly``). Saved as
  ``<output_dir>/controlnet``.
- ``depth``: Depth2Image's design. The condition is a fifth input channel of the U-Net itself: a height field of
  the silhouette (``course_utils.controlnet.depth_maps``), brought to the latents' size as
  ``StableDiffusionDepth2ImgPipeline`` does; the U-Net is a copy of the text-to-image one whose new channel's
  weights start at zero (``depth_unet``), and all of it is fine-tuned. Saved as ``<output_dir>/unet``.

Every ``--validation_steps`` it samples held-out controls and logs their silhouette IoU (``course_utils.
controlnet.silhouette_iou``): the curve of how fast the control is learned. Flags keep diffusers' names where they
mean the same. ``training_log.json`` holds the losses, the IoU by step, the time and the device. Resumable:
``--checkpointing_steps`` saves the whole state into ``checkpoints/checkpoint-<step>``, whole or not at all
(``course_utils.runs``); ``--resume_from_checkpoint latest`` continues from the newest, and since each batch is
drawn from a generator seeded by its step, a resumed run ends with the same weights as an uninterrupted one.
Every flag is checked before anything is drawn or built (``course_utils.train_checks``): one ``error:`` line per
problem, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from . import tiny_sd, train_checks
from .cli import FLOAT, INT, LR_SCHEDULERS, MIXED_PRECISION, Parser, exit_on_problems
from .controlnet import (
    MODEL_FOLDERS,
    control_pipeline,
    controlnet_loss,
    depth_loss,
    depth_maps,
    depth_unet,
    posed_butterflies,
    sample_controlled,
    silhouette_iou,
)
from .data import butterfly_attributes
from .files import atomic_folder
from .runs import TrainingLog, finish_run, load_checkpoint, resume_path, save_checkpoint

HELD_OUT = 300_000  # validation controls come from drawings from this index on, never in training
CHECKPOINTS = "checkpoints"


def default_base() -> Path:
    """The shipped ``tiny-sd-butterflies`` pipeline's folder."""
    return Path(__file__).resolve().parent / "pretrained" / "tiny-sd-butterflies"


def build_parser() -> Parser:
    """The script's flags (named as in diffusers' ``train_controlnet.py`` where they mean the same)."""
    p = Parser(prog="python -m course_utils.train_controlnet", description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", type=Path, required=True, help="where the model, checkpoints and log go")
    p.add_argument("--design", default="controlnet", choices=tuple(MODEL_FOLDERS),
                   help="controlnet (a side network) or depth (a fifth input channel of the U-Net)")
    p.add_argument("--pretrained_model_name_or_path", type=Path, default=default_base(),
                   help="the text-to-image pipeline folder whose U-Net is copied (default: the shipped "
                   "tiny-sd-butterflies)")
    p.add_argument("--num_images", type=INT, default=3000, check="at least 1",
                   help="posed butterflies drawn for training")
    p.add_argument("--seed", type=INT, default=0)
    p.add_argument("--max_train_steps", type=INT, default=800, check="at least 1")
    p.add_argument("--train_batch_size", type=INT, default=32, check="at least 1")
    p.add_argument("--learning_rate", type=FLOAT, default=1e-3, check="between 0 and 1, e.g. 1e-3")
    p.add_argument("--lr_scheduler", default="constant_with_warmup", choices=LR_SCHEDULERS)
    p.add_argument("--lr_warmup_steps", type=INT, default=50, check="0 or more")
    p.add_argument("--mixed_precision", default="no", choices=MIXED_PRECISION)
    p.add_argument("--validation_steps", type=INT, default=50, check="at least 1",
                   help="log the held-out silhouette IoU this often")
    p.add_argument("--num_validation_images", type=INT, default=16, check="at least 1")
    p.add_argument("--validation_inference_steps", type=INT, default=20, check="at least 1",
                   help="DDIM steps of a validation sample")
    p.add_argument("--checkpointing_steps", type=INT, default=200, check="at least 1")
    p.add_argument("--checkpoints_total_limit", type=INT, default=1, check="at least 1")
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    return p


def batch_generator(seed: int, step: int, process: int) -> torch.Generator:
    """The random source of one batch: seeded by the step and process, so a resumed run repeats it."""
    return torch.Generator().manual_seed((seed * 10_000_019 + step) * 64 + process)


def trainable(design: str, unet, halvings: int) -> torch.nn.Module:
    """What learns: a ControlNet copied from ``unet`` (its conditioning embedding halving the control image
    ``halvings`` times, to the latents' size), or a 5-channel copy of ``unet`` for the depth design."""
    if design == "depth":
        return depth_unet(unet).train()
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 128)[:halvings + 1])


def main(argv: list[str] | None = None) -> Path:
    args, problems = train_checks.controlnet(build_parser(), argv)  # every flag checked before anything is drawn
    exit_on_problems(problems)  # printed once, by the first process
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    out, design = args.output_dir, args.design
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    accelerator.wait_for_everyone()
    checkpoint = resume_path(args.resume_from_checkpoint, out / CHECKPOINTS)
    if args.resume_from_checkpoint and (out / MODEL_FOLDERS[design] / "config.json").is_file() and checkpoint is None:
        accelerator.print(f"{out} holds a finished run: nothing to resume")
        return out

    # Frozen parts: the text-to-image pipeline (its U-Net too, for a ControlNet). Trainable: the model of the design.
    base = StableDiffusionPipeline.from_pretrained(args.pretrained_model_name_or_path, dtype=torch.float32,
                                                   safety_checker=None, use_safetensors=True)
    vae, text_encoder, tokenizer, unet = base.vae, base.text_encoder, base.tokenizer, base.unet
    for frozen in (vae, text_encoder, unet):
        frozen.requires_grad_(False).eval().to(accelerator.device)
    torch.manual_seed(args.seed)
    model = trainable(design, unet, halvings=len(vae.config.block_out_channels) - 1)
    noise_scheduler = DDPMScheduler.from_config(base.scheduler.config)

    size = vae.config.sample_size
    accelerator.print(f"drawing {args.num_images} posed butterflies at {size} px ...")
    images, controls = posed_butterflies(range(args.num_images), size=size, seed=args.seed)
    conditions = depth_maps(controls) if design == "depth" else controls
    mean, std = tiny_sd.latent_posteriors(vae, images * 2 - 1, accelerator.device)  # once: each step samples them
    attrs = [butterfly_attributes(i, args.seed) for i in range(args.num_images)]
    held = range(HELD_OUT, HELD_OUT + args.num_validation_images)
    val_controls = posed_butterflies(held, size=size, seed=args.seed)[1]
    val_prompts = [butterfly_attributes(i, args.seed).caption for i in held]

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=1e-2)
    n = accelerator.num_processes  # a prepared schedule steps once per process per update
    schedule = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps * n,
                             num_training_steps=args.max_train_steps * n)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    log = TrainingLog(out, accelerator)
    step, about = load_checkpoint(accelerator, checkpoint) if checkpoint is not None else (0, {})
    log.start(design, step, about.get("seconds", 0.0))
    if checkpoint is not None:
        accelerator.print(f"resumed at step {step} from {checkpoint}")
    iou = log.data.setdefault("iou", {}).setdefault(design, [])
    iou[:] = [row for row in iou if row[0] <= step]

    def validate() -> None:
        trained = accelerator.unwrap_model(model).eval()
        pipe = control_pipeline(design, base, trained)
        with torch.no_grad():
            x = sample_controlled(pipe, val_prompts, val_controls, 5.0, args.validation_inference_steps, args.seed)
        iou.append([step, round(float(silhouette_iou(x, val_controls).mean()), 4)])
        model.train()

    if step == 0:
        validate()  # step 0: the zero weights add nothing yet
    bar = tqdm(total=args.max_train_steps, initial=step, desc=design, disable=not accelerator.is_local_main_process)
    running: list[float] = []
    model.train()
    while step < args.max_train_steps:
        g = batch_generator(args.seed, step, accelerator.process_index)
        rng = np.random.default_rng(g.initial_seed())
        idx = torch.randint(len(mean), (args.train_batch_size,), generator=g)
        latents = tiny_sd.sample_latents(vae, mean, std, idx, g)
        noise = torch.randn(latents.shape, generator=g).to(latents.device)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (len(idx),), generator=g).to(latents.device)
        prompts = [tiny_sd.random_caption(attrs[i].wing, attrs[i].background, rng) for i in idx.tolist()]
        with torch.no_grad():
            text = text_encoder(tiny_sd.token_ids(tokenizer, prompts).to(latents.device))[0]
        condition = conditions[idx].to(latents.device)
        with accelerator.autocast():
            if design == "depth":
                loss = depth_loss(model, noise_scheduler, latents, text, condition, noise, t)
            else:
                loss = controlnet_loss(model, unet, noise_scheduler, latents, text, condition, noise, t)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        step += 1
        bar.update(1)
        running.append(loss.item())
        if step == 1 or step % 50 == 0 or step == args.max_train_steps:
            log.add(step, float(np.mean(running)))
            bar.set_postfix(loss=f"{np.mean(running):.5f}", iou=iou[-1][1])
            running.clear()
        if step % args.validation_steps == 0 or step == args.max_train_steps:
            validate()
        if step % args.checkpointing_steps == 0 and step < args.max_train_steps:
            log.save()
            save_checkpoint(accelerator, out / CHECKPOINTS, step, args.checkpoints_total_limit,
                            about={"seconds": log.seconds()})
    bar.close()

    def save() -> None:
        with atomic_folder(out / MODEL_FOLDERS[design], replace=True) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)

    finish_run(args, accelerator, log, out / CHECKPOINTS, save, parameters=sum(p.numel() for p in model.parameters()))
    return out


def cli() -> None:
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
