"""Train the course's tiny Stable Diffusion on captioned synthetic butterflies, through Accelerate (chapter 8).

    python -m course_utils.train_text_to_image --output_dir tiny-sd
    accelerate launch -m course_utils.train_text_to_image --output_dir tiny-sd
    python -m course_utils.train_text_to_image --output_dir tiny-sd --resume_from_checkpoint latest

Two stages, like Stable Diffusion's own history (its VAE was trained first, then frozen):

1. the VAE (``AutoencoderKL``) learns to squeeze 32x32 drawings into 4x8x8 latents and back: L1 reconstruction
   loss plus a small KL term (``--kl_weight``); its ``scaling_factor`` is then measured (1 / the latents' std)
   and written into its config, and it is saved to ``<output_dir>/vae``;
2. with the VAE frozen, the U-Net (``UNet2DConditionModel``) and the text encoder (``CLIPTextModel``, trained
   from scratch here, where Stable Diffusion borrows CLIP's) learn together to predict the noise added to
   latents, reading the caption through cross-attention; 10 % of captions are empty, so the same model
   predicts without a caption and classifier-free guidance works.

The result is a ``StableDiffusionPipeline`` folder in ``--output_dir`` (``from_pretrained`` loads it), with
``training_log.json`` (losses, times, device). The captions come from the drawings' parameters with the grammar
in ``course_utils.tiny_sd``. Flags keep the names of diffusers' ``examples/text_to_image/train_text_to_image.py``
where they mean the same (``--resolution``, ``--train_batch_size``, ``--max_train_steps``, ``--learning_rate``,
``--lr_scheduler``, ``--lr_warmup_steps``, ``--mixed_precision``, ``--checkpointing_steps``,
``--checkpoints_total_limit``, ``--resume_from_checkpoint``, ``--seed``, ``--output_dir``).

Resumable: ``--checkpointing_steps`` saves the whole state of the running stage (models, optimizer, LR schedule,
step) into ``checkpoints-vae/checkpoint-<step>`` or ``checkpoints-unet/checkpoint-<step>``, whole or not at all;
``--resume_from_checkpoint latest`` continues from the newest. Each batch is drawn from a generator seeded by the
step, so a resumed run takes the same batches as an uninterrupted one. Every flag is checked before anything
is drawn or built: one ``error:`` line per problem, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from . import tiny_sd, train_checks
from .cli import FLOAT, INT, LR_SCHEDULERS, MIXED_PRECISION, Parser, exit_on_problems
from .data import butterfly_attributes
from .files import atomic_folder
from .metrics import drawn_butterflies
from .runs import LOG_FILE, TrainingLog, end_step, list_checkpoints, load_checkpoint, save_pipeline_into

STAGES = ("vae", "unet")


def build_parser() -> Parser:
    """The script's flags (named as in diffusers' ``train_text_to_image.py`` where they mean the same)."""
    p = Parser(prog="python -m course_utils.train_text_to_image",
               description="Train the course's tiny Stable Diffusion on captioned synthetic butterflies.")
    p.add_argument("--output_dir", type=Path, default=Path("tiny-sd"),
                   help="where the pipeline, checkpoints and log go (default: tiny-sd)")
    p.add_argument("--resolution", type=INT, default=32, check=(lambda v: v >= 16 and v % 8 == 0,
                   "a multiple of 8, at least 16 (e.g. 32)"),
                   help="image size (a multiple of 8; latents are a quarter)")
    p.add_argument("--num_images", type=INT, default=5000, check="at least 1",
                   help="synthetic butterflies drawn for training")
    p.add_argument("--seed", type=INT, default=0)
    p.add_argument("--vae_steps", type=INT, default=1000, check="0 or more",
                   help="stage 1: VAE updates (0: keep the VAE untrained; its scaling factor is still measured)")
    p.add_argument("--vae_batch_size", type=INT, default=64, check="at least 1")
    p.add_argument("--vae_learning_rate", type=FLOAT, default=1e-3, check="between 0 and 1, e.g. 1e-3")
    p.add_argument("--kl_weight", type=FLOAT, default=1e-6, check=(lambda v: 0 <= v < 1, "in [0, 1), e.g. 1e-6"),
                   help="weight of the VAE's KL term (Stable Diffusion: 1e-6)")
    p.add_argument("--max_train_steps", type=INT, default=2500, check="at least 1",
                   help="stage 2: U-Net + text encoder updates")
    p.add_argument("--train_batch_size", type=INT, default=128, check="at least 1")
    p.add_argument("--learning_rate", type=FLOAT, default=1e-3, check="between 0 and 1, e.g. 1e-3")
    p.add_argument("--lr_scheduler", default="cosine", choices=LR_SCHEDULERS)
    p.add_argument("--lr_warmup_steps", type=INT, default=200, check="0 or more")
    p.add_argument("--mixed_precision", default="no", choices=MIXED_PRECISION)
    p.add_argument("--checkpointing_steps", type=INT, default=500, check="at least 1")
    p.add_argument("--checkpoints_total_limit", type=INT, default=1, check="at least 1")
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    return p


def stage_of(checkpoint: Path) -> str:
    """The stage a checkpoint folder belongs to: "vae" or "unet" (from ``checkpoints-<stage>/checkpoint-N``)."""
    return checkpoint.parent.name.removeprefix("checkpoints-")


def resume_point(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The stage to start in ("done" if a resumed run had finished) and the checkpoint to load (None: none)."""
    vae_done = (args.output_dir / "vae" / "config.json").is_file()
    if args.resume_from_checkpoint not in (None, "latest"):
        ckpt = Path(args.resume_from_checkpoint)
        return stage_of(ckpt), ckpt
    log = args.output_dir / LOG_FILE
    if args.resume_from_checkpoint and (args.output_dir / "model_index.json").is_file() and log.is_file() \
            and "args" in json.loads(log.read_text()):
        return "done", None
    stage = "unet" if vae_done else "vae"
    found = list_checkpoints(args.output_dir / f"checkpoints-{stage}") if args.resume_from_checkpoint else []
    return stage, (found[-1] if found else None)


def batch_generator(args: argparse.Namespace, stage: str, step: int, process: int) -> torch.Generator:
    """The random source of one batch: seeded by the stage, step and process, so a resume repeats it."""
    return torch.Generator().manual_seed(((args.seed * 2 + STAGES.index(stage)) * 10_000_019 + step) * 64 + process)


def main(argv: list[str] | None = None) -> Path:
    """Check every flag, then train the VAE (stage 1) and the U-Net with the text encoder (stage 2), resumably;
    return the output folder holding the pipeline."""
    args, problems = train_checks.text_to_image(build_parser(), argv)  # every flag checked before anything is drawn
    exit_on_problems(problems)  # printed once, by the first process
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    accelerator.wait_for_everyone()  # every process has checked the flags before the first one writes anything
    accelerator.print(f"{accelerator.num_processes} process(es) on {accelerator.device}")
    log = TrainingLog(out, accelerator)
    stage, checkpoint = resume_point(args)
    if stage == "done":
        accelerator.print(f"{out} holds a finished run: nothing to resume")
        return out

    tokenizer_dir = out / "tokenizer"
    if accelerator.is_main_process:  # one process writes it (whole or not at all), the others wait
        with atomic_folder(tokenizer_dir, replace=True) as tmp:
            tiny_sd.write_tokenizer(tmp)
    accelerator.wait_for_everyone()
    parts = tiny_sd.build_parts(tokenizer_dir, args.resolution, args.seed)
    accelerator.print(f"drawing {args.num_images} butterflies at {args.resolution} px ...")
    images = drawn_butterflies(range(args.num_images), size=args.resolution) * 2 - 1
    attrs = [butterfly_attributes(i) for i in range(args.num_images)]

    if stage == "vae":
        train_vae(args, accelerator, parts["vae"], images, checkpoint, log)
        checkpoint = None
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(out / "vae")
    train_unet(args, accelerator, vae, parts, images, attrs, checkpoint, log)
    return out


def _progress(accelerator, total: int, start: int, desc: str):
    return tqdm(total=total, initial=start, desc=desc, disable=not accelerator.is_local_main_process)


def _restore(accelerator: Accelerator, checkpoint: Path | None, log: TrainingLog, stage: str) -> int:
    """Load a checkpoint into the prepared objects; the step it was taken at (0 without one). The log keeps
    the losses up to that step and the stage's seconds so far (from the checkpoint's ``course_model.json``)."""
    if checkpoint is None:
        log.start(stage)
        return 0
    step, about = load_checkpoint(accelerator, checkpoint)
    log.start(stage, step, about.get("seconds", 0.0))
    accelerator.print(f"resumed the {stage} stage at step {step} from {checkpoint}")
    return step


def train_vae(args, accelerator: Accelerator, vae, images: torch.Tensor, checkpoint: Path | None,
              log: TrainingLog) -> None:
    """Stage 1: L1 reconstruction + kl_weight * KL; then measure the scaling factor and save ``<out>/vae``."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_learning_rate, weight_decay=0.0)
    n = accelerator.num_processes  # a prepared schedule steps once per process per update
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=min(100, args.vae_steps // 10) * n,
                             num_training_steps=max(args.vae_steps, 1) * n)
    vae, optimizer, schedule = accelerator.prepare(vae, optimizer, schedule)
    step = _restore(accelerator, checkpoint, log, "vae")
    running = []
    bar = _progress(accelerator, args.vae_steps, step, "stage 1: VAE")
    vae.train()
    while step < args.vae_steps:
        g = batch_generator(args, "vae", step, accelerator.process_index)
        x = images[torch.randint(len(images), (args.vae_batch_size,), generator=g)].to(accelerator.device)
        with accelerator.autocast():
            posterior = accelerator.unwrap_model(vae).encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(x.device)
            recon = accelerator.unwrap_model(vae).decode(z).sample
            loss = F.l1_loss(recon.float(), x) + args.kl_weight * posterior.kl().mean()
        accelerator.backward(loss)
        if accelerator.num_processes > 1:  # the VAE is called unwrapped (for its KL term): average by hand
            for p in vae.parameters():
                if p.grad is not None:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
        step += 1
        running.append(loss.item())
        end_step(args, accelerator, optimizer, schedule, log, args.output_dir / "checkpoints-vae", step,
                 args.vae_steps, running, bar)
    bar.close()
    log.save()  # before the VAE: it marks the stage done
    if accelerator.is_main_process:
        vae = accelerator.unwrap_model(vae).eval()
        with torch.no_grad():
            z = torch.cat([vae.encode(b.to(accelerator.device)).latent_dist.sample() for b in images[:1000].split(250)])
        vae.register_to_config(scaling_factor=round(1 / float(z.std()), 5))
        with atomic_folder(args.output_dir / "vae", replace=True) as tmp:
            vae.save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(args.output_dir / "checkpoints-vae", ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.free_memory()  # forget the VAE and its optimizer: stage 2's checkpoints hold only its own objects


def train_unet(args, accelerator: Accelerator, vae, parts: dict, images: torch.Tensor, attrs: list,
               checkpoint: Path | None, log: TrainingLog) -> None:
    """Stage 2: the U-Net and text encoder predict the noise in latents of the frozen VAE, reading the caption."""
    unet, text_encoder, tokenizer, noise_scheduler = (parts[k] for k in ("unet", "text_encoder", "tokenizer",
                                                                         "noise_scheduler"))
    vae.requires_grad_(False).eval().to(accelerator.device)
    mean, std = tiny_sd.latent_posteriors(vae, images, accelerator.device)  # once: each step samples from them
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=1e-2)
    n = accelerator.num_processes  # a prepared schedule steps once per process per update
    schedule = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps * n,
                             num_training_steps=args.max_train_steps * n)
    unet, text_encoder, optimizer, schedule = accelerator.prepare(unet, text_encoder, optimizer, schedule)
    step = _restore(accelerator, checkpoint, log, "unet")
    running = []
    bar = _progress(accelerator, args.max_train_steps, step, "stage 2: U-Net + text encoder")
    unet.train()
    text_encoder.train()
    while step < args.max_train_steps:
        g = batch_generator(args, "unet", step, accelerator.process_index)
        rng = np.random.default_rng(g.initial_seed())
        idx = torch.randint(len(mean), (args.train_batch_size,), generator=g)
        latents = tiny_sd.sample_latents(vae, mean, std, idx, g)
        noise = torch.randn(latents.shape, generator=g).to(latents.device)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (len(idx),), generator=g).to(latents.device)
        prompts = [tiny_sd.random_caption(attrs[i].wing, attrs[i].background, rng) for i in idx.tolist()]
        ids = tiny_sd.token_ids(tokenizer, prompts).to(latents.device)
        with accelerator.autocast():
            text = text_encoder(ids)[0]
            pred = unet(noise_scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=text).sample
            loss = F.mse_loss(pred.float(), noise)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        step += 1
        running.append(loss.item())
        end_step(args, accelerator, optimizer, schedule, log, args.output_dir / "checkpoints-unet", step,
                 args.max_train_steps, running, bar)
    bar.close()
    log.finish(args, parameters={k: sum(p.numel() for p in m.parameters()) for k, m in
                                 (("vae", vae), ("text_encoder", text_encoder), ("unet", unet))})
    log.save()  # the run is done once the pipeline is
    if accelerator.is_main_process:
        pipeline = tiny_sd.assemble(vae, accelerator.unwrap_model(text_encoder).eval(), tokenizer,
                                    accelerator.unwrap_model(unet).eval())
        save_pipeline_into(pipeline, args.output_dir)
        shutil.rmtree(args.output_dir / "checkpoints-unet", ignore_errors=True)
    accelerator.wait_for_everyone()


def cli() -> None:
    """``python -m course_utils.train_text_to_image``."""
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
