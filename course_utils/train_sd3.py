"""Train a tiny Stable Diffusion 3 on captioned synthetic butterflies, through Accelerate (chapter 13).

    python -m course_utils.train_sd3 --output_dir tiny-sd3
    accelerate launch -m course_utils.train_sd3 --output_dir tiny-sd3
    python -m course_utils.train_sd3 --output_dir tiny-sd3 --resume_from_checkpoint latest

SD3's recipe, small (diffusers' ``examples/dreambooth/train_dreambooth_sd3.py`` is the full-size one): an
``SD3Transformer2DModel`` (an MM-DiT: caption tokens and latent patches in one joint attention, adaLN-Zero blocks
conditioned on the timestep and the pooled caption) learns flow matching on the latents of a frozen VAE, reading
frozen text encoders. Here the VAE and the CLIP text encoder are ``tiny-sd-butterflies``' (``--pretrained_model_
name_or_path``), the one CLIP serving as both of SD3's CLIP encoders and the T5 dropped (``course_utils.sd3``).
Each step: a drawing's latents x0, u drawn logit-normal (``--logit_mean``, ``--logit_std``), the noise level sigma
from the scheduler's table shifted by ``--flow_shift``, x_t = (1 - sigma) x0 + sigma noise, and the mean squared
error of the transformer's output against noise - x0. The captions are the course's mix (10 % empty, for
classifier-free guidance); since the text encoder is frozen, each caption of the grammar is encoded once.

The result is a ``StableDiffusion3Pipeline`` folder in ``--output_dir`` (``course_utils.sd3.load_sd3`` loads it;
call it with ``max_sequence_length=0``), with ``training_log.json`` (losses, time, device). Flags keep diffusers'
names where they mean the same. Resumable: ``--checkpointing_steps`` saves the whole state into
``checkpoints/checkpoint-<step>``, whole or not at all (``course_utils.runs``); ``--resume_from_checkpoint latest``
continues from the newest, and since each batch is drawn from a generator seeded by its step, a resumed run takes
the same batches as an uninterrupted one. Every flag is checked before anything is drawn or built
(``course_utils.train_checks``): one ``error:`` line per problem, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from . import sd3, tiny_sd, train_checks
from .cli import FLOAT, INT, LR_SCHEDULERS, MIXED_PRECISION, Parser, exit_on_problems
from .data import butterfly_attributes
from .metrics import drawn_butterflies
from .runs import TrainingLog, end_step, finish_run, load_checkpoint, resume_path, save_pipeline_into
from .train_controlnet import batch_generator, default_base

CHECKPOINTS = "checkpoints"


def build_parser() -> Parser:
    """The script's flags (named as in diffusers' SD3 training scripts where they mean the same)."""
    p = Parser(prog="python -m course_utils.train_sd3", description=__doc__.split("\n")[0])
    p.add_argument("--output_dir", type=Path, required=True, help="where the pipeline, checkpoints and log go")
    p.add_argument("--pretrained_model_name_or_path", type=Path, default=default_base(),
                   help="the Stable Diffusion folder whose VAE, tokenizer and text encoder are used, frozen "
                   "(default: the shipped tiny-sd-butterflies)")
    p.add_argument("--num_images", type=INT, default=5000, check="at least 1",
                   help="synthetic butterflies drawn for training")
    p.add_argument("--seed", type=INT, default=0)
    p.add_argument("--patch_size", type=INT, default=2, check=(lambda v: v in (1, 2, 4, 8),
                   "1, 2, 4 or 8 (it must divide the 8 x 8 latents)"),
                   help="latent pixels a side per image token (SD3: 2)")
    p.add_argument("--num_layers", type=INT, default=4, check="at least 1", help="MM-DiT blocks")
    p.add_argument("--num_attention_heads", type=INT, default=4, check="at least 1")
    p.add_argument("--attention_head_dim", type=INT, default=32, check="at least 1", help="the width is heads x this")
    p.add_argument("--max_train_steps", type=INT, default=8000, check="at least 1")
    p.add_argument("--train_batch_size", type=INT, default=32, check="at least 1")
    p.add_argument("--learning_rate", type=FLOAT, default=3e-4, check="between 0 and 1, e.g. 1e-3")
    p.add_argument("--lr_scheduler", default="cosine", choices=LR_SCHEDULERS)
    p.add_argument("--lr_warmup_steps", type=INT, default=200, check="0 or more")
    p.add_argument("--logit_mean", type=FLOAT, default=0.0, help="the logit-normal timestep sampling's mean")
    p.add_argument("--logit_std", type=FLOAT, default=1.0, check="a finite number above 0", help="... and its spread")
    p.add_argument("--flow_shift", type=FLOAT, default=1.0, check="a finite number above 0",
                   help="the scheduler's timestep shift, in training and in the saved pipeline (SD3: 3.0 at 1024 px)")
    p.add_argument("--mixed_precision", default="no", choices=MIXED_PRECISION)
    p.add_argument("--checkpointing_steps", type=INT, default=1000, check="at least 1")
    p.add_argument("--checkpoints_total_limit", type=INT, default=1, check="at least 1")
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    return p


def main(argv: list[str] | None = None) -> Path:
    """Check every flag, then train the transformer (resumably); return the output folder holding the pipeline."""
    args, problems = train_checks.sd3(build_parser(), argv)  # every flag checked before anything is drawn
    exit_on_problems(problems)  # printed once, by the first process
    from diffusers import SD3Transformer2DModel, StableDiffusionPipeline

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    accelerator.wait_for_everyone()
    checkpoint = resume_path(args.resume_from_checkpoint, out / CHECKPOINTS)
    if args.resume_from_checkpoint and (out / "transformer" / "config.json").is_file() and checkpoint is None:
        accelerator.print(f"{out} holds a finished run: nothing to resume")
        return out

    # Frozen: the VAE and the text encoder of the tiny SD. Trainable: a new transformer.
    base = StableDiffusionPipeline.from_pretrained(args.pretrained_model_name_or_path, dtype=torch.float32,
                                                   safety_checker=None, use_safetensors=True)
    vae, tokenizer = base.vae.requires_grad_(False).eval().to(accelerator.device), base.tokenizer
    encoder = sd3.clip_with_projection(base.text_encoder).to(accelerator.device)
    torch.manual_seed(args.seed)
    transformer = SD3Transformer2DModel(**sd3.transformer_config(
        encoder.config.hidden_size, args.patch_size, args.num_layers, args.num_attention_heads,
        args.attention_head_dim))

    accelerator.print(f"drawing {args.num_images} butterflies ...")
    images = drawn_butterflies(range(args.num_images), size=vae.config.sample_size) * 2 - 1
    mean, std = tiny_sd.latent_posteriors(vae, images, accelerator.device)  # once: each step samples from them
    attrs = [butterfly_attributes(i) for i in range(args.num_images)]
    grammar = tiny_sd.all_captions()  # the frozen encoder's output for every caption there is, once
    table_text, table_pooled = sd3.encode_captions(tokenizer, encoder, grammar)
    row = {caption: i for i, caption in enumerate(grammar)}

    optimizer = torch.optim.AdamW(transformer.parameters(), lr=args.learning_rate, weight_decay=1e-2)
    n = accelerator.num_processes  # a prepared schedule steps once per process per update
    schedule = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps * n,
                             num_training_steps=args.max_train_steps * n)
    transformer, optimizer, schedule = accelerator.prepare(transformer, optimizer, schedule)
    log = TrainingLog(out, accelerator)
    step, about = load_checkpoint(accelerator, checkpoint) if checkpoint is not None else (0, {})
    log.start("transformer", step, about.get("seconds", 0.0))
    if checkpoint is not None:
        accelerator.print(f"resumed at step {step} from {checkpoint}")
    bar = tqdm(total=args.max_train_steps, initial=step, desc="transformer",
               disable=not accelerator.is_local_main_process)
    running: list[float] = []
    transformer.train()
    while step < args.max_train_steps:
        g = batch_generator(args.seed, step, accelerator.process_index)
        rng = np.random.default_rng(g.initial_seed())
        idx = torch.randint(len(mean), (args.train_batch_size,), generator=g)
        x0 = tiny_sd.sample_latents(vae, mean, std, idx, g)
        which = torch.tensor([row[tiny_sd.random_caption(attrs[i].wing, attrs[i].background, rng)]
                              for i in idx.tolist()])
        with accelerator.autocast():
            loss = sd3.flow_matching_loss(transformer, x0, table_text[which], table_pooled[which], args.flow_shift,
                                          g, args.logit_mean, args.logit_std)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(transformer.parameters(), 1.0)
        step += 1
        running.append(loss.item())
        end_step(args, accelerator, optimizer, schedule, log, out / CHECKPOINTS, step, args.max_train_steps, running,
                 bar)
    bar.close()

    def save() -> None:
        save_pipeline_into(sd3.assemble(vae.cpu(), tokenizer, encoder.cpu(),
                                        accelerator.unwrap_model(transformer).eval().cpu(), args.flow_shift), out)

    finish_run(args, accelerator, log, out / CHECKPOINTS, save, parameters={
        k: sum(p.numel() for p in m.parameters()) for k, m in (("vae", vae), ("text_encoder", encoder),
                                                               ("transformer", transformer))})
    return out


def cli() -> None:
    """``python -m course_utils.train_sd3``."""
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
