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
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from . import tiny_sd
from .data import butterfly_attributes
from .files import atomic_folder
from .metrics import drawn_butterflies
from .train_unconditional import CHOICES, exit_on_problems, list_checkpoints, save_checkpoint, save_pipeline_into

STAGES = ("vae", "unet")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_utils.train_text_to_image", description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", type=Path, required=True, help="where the pipeline, checkpoints and log go")
    p.add_argument("--resolution", type=int, default=32, help="image size (a multiple of 8; latents are a quarter)")
    p.add_argument("--num_images", type=int, default=5000, help="synthetic butterflies drawn for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae_steps", type=int, default=1000,
                   help="stage 1: VAE updates (0: keep the VAE untrained; its scaling factor is still measured)")
    p.add_argument("--vae_batch_size", type=int, default=64)
    p.add_argument("--vae_learning_rate", type=float, default=1e-3)
    p.add_argument("--kl_weight", type=float, default=1e-6, help="weight of the VAE's KL term (Stable Diffusion: 1e-6)")
    p.add_argument("--max_train_steps", type=int, default=2500, help="stage 2: U-Net + text encoder updates")
    p.add_argument("--train_batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--lr_scheduler", default="cosine", help=f"one of {', '.join(CHOICES['lr_scheduler'])}")
    p.add_argument("--lr_warmup_steps", type=int, default=200)
    p.add_argument("--mixed_precision", default="no", help="no, fp16 or bf16")
    p.add_argument("--checkpointing_steps", type=int, default=500)
    p.add_argument("--checkpoints_total_limit", type=int, default=1)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    return p


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the flags, one line each (nothing is drawn, built or written)."""
    problems = []
    for flag in ("num_images", "vae_batch_size", "max_train_steps", "train_batch_size", "checkpointing_steps",
                 "checkpoints_total_limit"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag} {getattr(args, flag)}: must be at least 1")
    for flag in ("vae_steps", "lr_warmup_steps"):
        if getattr(args, flag) < 0:
            problems.append(f"--{flag} {getattr(args, flag)}: must be 0 or more")
    for flag in ("learning_rate", "vae_learning_rate"):
        if not 0 < getattr(args, flag) < 1:
            problems.append(f"--{flag} {getattr(args, flag)}: must be between 0 and 1, e.g. 1e-3")
    if not 0 <= args.kl_weight < 1:
        problems.append(f"--kl_weight {args.kl_weight}: must be in [0, 1), e.g. 1e-6")
    if args.resolution < 16 or args.resolution % 8:
        problems.append(f"--resolution {args.resolution}: must be a multiple of 8, at least 16 (e.g. 32)")
    for flag in ("lr_scheduler", "mixed_precision"):
        if getattr(args, flag) not in CHOICES[flag]:
            problems.append(f"--{flag} {getattr(args, flag)}: choose one of {', '.join(CHOICES[flag])}")
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        problems.append("--mixed_precision fp16: needs a GPU; use no (or bf16) on a CPU")
    out = args.output_dir
    if out.exists() and not out.is_dir():
        problems.append(f"--output_dir {out}: is a file; pass a folder (it is created if missing)")
    elif args.resume_from_checkpoint is None and out.is_dir() and any(p.name[0] != "." for p in out.iterdir()):
        problems.append(f"--output_dir {out}: holds another run; pass --resume_from_checkpoint latest to continue "
                        "it, or a new folder")
    elif args.resume_from_checkpoint not in (None, "latest"):
        problems += _checkpoint_problems(Path(args.resume_from_checkpoint), out)
    return problems


def _stage_of(checkpoint: Path) -> str:
    """The stage a checkpoint folder belongs to: "vae" or "unet" (from ``checkpoints-<stage>/checkpoint-N``)."""
    return checkpoint.parent.name.removeprefix("checkpoints-")


def _checkpoint_problems(ckpt: Path, out: Path) -> list[str]:
    """Problems with ``--resume_from_checkpoint <path>``: a checkpoint of this run, of a stage that is still due."""
    flag = f"--resume_from_checkpoint {ckpt}"
    stage = _stage_of(ckpt)
    if not (ckpt / "course_step.json").is_file() or stage not in STAGES:
        return [f"{flag}: not a checkpoint of this script (want {out}/checkpoints-vae/checkpoint-N or "
                f"{out}/checkpoints-unet/checkpoint-N, or latest)"]
    if ckpt.resolve().parent.parent != out.resolve():
        return [f"{flag}: belongs to another run; pass that run's folder as --output_dir (it holds the VAE and "
                "tokenizer the checkpoint was trained with)"]
    vae_done = (out / "vae" / "config.json").is_file()
    if stage == "unet" and not vae_done:
        return [f"{flag}: {out}/vae is missing, so stage 2 cannot go on; resume the VAE stage (latest) instead"]
    if stage == "vae" and vae_done:
        return [f"{flag}: the VAE stage has finished ({out}/vae); resuming it would retrain the VAE and lose stage 2: "
                "pass latest"]
    return []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    exit_on_problems([f"error: {line}" for line in check_args(args)])  # printed once, by the first process
    return args


def resume_point(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The stage to start in ("done" if a resumed run had finished) and the checkpoint to load (None: none)."""
    vae_done = (args.output_dir / "vae" / "config.json").is_file()
    if args.resume_from_checkpoint not in (None, "latest"):
        ckpt = Path(args.resume_from_checkpoint)
        return _stage_of(ckpt), ckpt
    log = args.output_dir / "training_log.json"
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
    args = parse_args(argv)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    accelerator.wait_for_everyone()  # every process has checked the flags before the first one writes anything
    accelerator.print(f"{accelerator.num_processes} process(es) on {accelerator.device}")
    log_file = out / "training_log.json"
    log = json.loads(log_file.read_text()) if log_file.is_file() else dict(losses={"vae": [], "unet": []}, seconds={})
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


def _save_log(accelerator: Accelerator, log: dict, file: Path, stage: str) -> None:
    """Write the log (losses, and the stage's seconds so far, resumed runs included) whole or not at all."""
    log["seconds"][stage] = round(time.perf_counter() - log["clock"], 1)
    if accelerator.is_main_process:
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in log.items() if k != "clock"}, indent=1))
        tmp.replace(file)


def _progress(accelerator, total: int, start: int, desc: str):
    return tqdm(total=total, initial=start, desc=desc, disable=not accelerator.is_local_main_process)


def _restore(accelerator: Accelerator, checkpoint: Path | None, log: dict, stage: str) -> int:
    """Load a checkpoint into the prepared objects; the step it was taken at (0 without one). The log keeps
    the losses up to that step; the stage's seconds so far come from the checkpoint's ``course_model.json``."""
    about = checkpoint / "course_model.json" if checkpoint is not None else None
    seconds = json.loads(about.read_text()).get("seconds", 0) if about is not None and about.is_file() else 0
    log["clock"] = time.perf_counter() - seconds  # the stage's time up to the checkpoint, not to a later log write
    if checkpoint is None:
        log["losses"][stage] = []
        return 0
    accelerator.load_state(str(checkpoint))
    step = json.loads((checkpoint / "course_step.json").read_text())["step"]
    log["losses"][stage] = [row for row in log["losses"][stage] if row[0] <= step]
    accelerator.print(f"resumed the {stage} stage at step {step} from {checkpoint}")
    return step


def _end_step(args, accelerator: Accelerator, optimizer, schedule, log: dict, stage: str, step: int, total: int,
              running: list[float], bar) -> None:
    """After a backward pass: the optimizer's and the schedule's step; the running mean loss logged (at step 1,
    every 50 steps and the last); a checkpoint every ``--checkpointing_steps`` (not at the end: the stage saves)."""
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    bar.update(1)
    if step == 1 or step % 50 == 0 or step == total:
        log["losses"][stage].append([step, round(float(np.mean(running)), 5)])
        bar.set_postfix(loss=log["losses"][stage][-1][1])
        running.clear()
    if step % args.checkpointing_steps == 0 and step < total:
        _save_log(accelerator, log, args.output_dir / "training_log.json", stage)
        save_checkpoint(accelerator, args.output_dir / f"checkpoints-{stage}", step, args.checkpoints_total_limit,
                        about={"seconds": log["seconds"][stage]})


def train_vae(args, accelerator: Accelerator, vae, images: torch.Tensor, checkpoint: Path | None, log: dict) -> None:
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
        _end_step(args, accelerator, optimizer, schedule, log, "vae", step, args.vae_steps, running, bar)
    bar.close()
    _save_log(accelerator, log, args.output_dir / "training_log.json", "vae")  # before the VAE: it marks the stage done
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
               checkpoint: Path | None, log: dict) -> None:
    """Stage 2: the U-Net and text encoder predict the noise in latents of the frozen VAE, reading the caption."""
    unet, text_encoder, tokenizer, noise_scheduler = (parts[k] for k in ("unet", "text_encoder", "tokenizer",
                                                                         "noise_scheduler"))
    vae.requires_grad_(False).eval().to(accelerator.device)
    with torch.no_grad():  # the drawings' latent distributions, once: each step samples from them
        posteriors = [vae.encode(b.to(accelerator.device)).latent_dist for b in images.split(250)]
    mean, std = torch.cat([p.mean for p in posteriors]), torch.cat([p.std for p in posteriors])
    scale = vae.config.scaling_factor
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
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g).to(mean.device)) * scale
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
        _end_step(args, accelerator, optimizer, schedule, log, "unet", step, args.max_train_steps, running, bar)
    bar.close()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    log.update(args={k: str(v) for k, v in vars(args).items()}, device=device, torch=torch.__version__,
               date=str(date.today()), processes=accelerator.num_processes,
               parameters={k: sum(p.numel() for p in m.parameters()) for k, m in
                           (("vae", vae), ("text_encoder", text_encoder), ("unet", unet))})
    _save_log(accelerator, log, args.output_dir / "training_log.json", "unet")  # the run is done once the pipeline is
    if accelerator.is_main_process:
        pipeline = tiny_sd.assemble(vae, accelerator.unwrap_model(text_encoder).eval(), tokenizer,
                                    accelerator.unwrap_model(unet).eval())
        save_pipeline_into(pipeline, args.output_dir)
        shutil.rmtree(args.output_dir / "checkpoints-unet", ignore_errors=True)
    accelerator.wait_for_everyone()


def cli() -> None:
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
