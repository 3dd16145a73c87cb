"""LCM-LoRA (chapter 14): the tiny Stable Diffusion's guided many-step sampler distilled into a LoRA.

The consistency pieces are ``course_utils.consistency``'s (``consistency``, ``x0_and_noise``, ``lcm_scheduler``),
applied in latent space with a text condition, as diffusers' ``train_lcm_distill_lora_sd_wds.py`` does:

- ``teacher_step``: the base U-Net's DDIM step ``t -> t - skip`` with classifier-free guidance folded in;
- ``distil_step``: one loss, the student (base + LoRA) at ``t`` against itself (no grad, no EMA copy) at the
  teacher's ``t - skip``; a guidance scale drawn per latent, so that the LoRA samples at guidance 1;
- ``train``: LoRA adapters on the pipeline's U-Net (``course_utils.lora.add_lora``), trained on captioned drawings;
- ``save_lora`` / ``load_lcm_lora``: the adapters in diffusers' LoRA format, loaded back with ``LCMScheduler``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .consistency import consistency, ddim_step, distance, lcm_scheduler, on_grid, x0_and_noise
from .lora import LORA_TARGETS, add_lora

# The course's LoRA layers plus the ones diffusers' LCM-LoRA script adds: the attention blocks' projections and
# feed-forward, the residual blocks' time embedding (the jump's length depends on t).
LCM_TARGETS = (*LORA_TARGETS, "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "time_emb_proj")
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name for a LoRA's weights
GUIDANCE = (3.0, 7.5)  # the range of guidance scales folded in (the tiny SD's card: 3 to 7.5 read best)


def teacher_step(unet, x: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, text: torch.Tensor,
                 uncond: torch.Tensor, scale: torch.Tensor | float, alphas_cumprod: torch.Tensor,
                 prediction_type: str) -> torch.Tensor:
    """The teacher's DDIM step (eta 0) from x at t to t_prev, on x0 and noise guided as uncond + s (cond - uncond)."""
    both = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([text, uncond])).sample
    x0_cond, eps_cond = x0_and_noise(both[: len(x)], x, t, alphas_cumprod, prediction_type)
    x0_uncond, eps_uncond = x0_and_noise(both[len(x):], x, t, alphas_cumprod, prediction_type)
    s = torch.as_tensor(scale, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    x0, eps = x0_uncond + s * (x0_cond - x0_uncond), eps_uncond + s * (eps_cond - eps_uncond)
    return ddim_step(x0, eps, t_prev, alphas_cumprod)


def distil_step(student, latents: torch.Tensor, text: torch.Tensor, uncond: torch.Tensor, skip: int,
                alphas_cumprod: torch.Tensor, prediction_type: str, generator: torch.Generator,
                guidance: tuple[float, float] = GUIDANCE, loss: str = "l2") -> torch.Tensor:
    """One LCM-LoRA loss on clean latents with their captions' embeddings ``text`` (``uncond``: the empty prompt's).

    A timestep t on the teacher's grid (skip - 1, 2 skip - 1, ..., 999) and the forward process there; the
    student's f at t; a guidance scale per latent, uniform in ``guidance``; the teacher (``student`` with its
    adapters off) steps to t - skip; the target is the student's own f there, without gradient.
    """
    n = len(latents)
    x, t, t_prev = on_grid(latents, skip, alphas_cumprod, generator)
    scale = guidance[0] + (guidance[1] - guidance[0]) * torch.rand(n, generator=generator)
    conditioned = functools.partial(student, encoder_hidden_states=text)
    prediction = consistency(conditioned, x, t, alphas_cumprod, prediction_type)
    with torch.no_grad():
        with student.disable_adapter():  # the base U-Net is the teacher
            x_prev = teacher_step(student, x, t, t_prev, text, uncond.expand(n, -1, -1), scale, alphas_cumprod,
                                  prediction_type)
        aim = consistency(conditioned, x_prev, t_prev, alphas_cumprod, prediction_type)
    return distance(prediction, aim, loss)


def training_set(pipeline, n: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """The VAE latents of drawn butterflies 0..n-1 (the base's training drawings) and a training caption for each."""
    from .data import butterfly_attributes
    from .metrics import drawn_butterflies
    from .tiny_sd import encode_images, random_caption

    size = pipeline.vae.config.sample_size
    rng = np.random.default_rng(seed)
    attrs = [butterfly_attributes(i) for i in range(n)]
    latents = torch.cat([encode_images(pipeline.vae, drawn_butterflies(range(i, min(i + 500, n)), size=size))
                         for i in range(0, n, 500)])
    return latents.cpu(), [random_caption(a.wing, a.background, rng) for a in attrs]


def train(pipeline, steps: int, n_images: int = 2000, batch: int = 32, skip: int = 20,
          guidance: tuple[float, float] = GUIDANCE, rank: int = 8, targets: Sequence[str] = LCM_TARGETS,
          lr: float = 1e-3, loss: str = "l2", seed: int = 0,
          report: Callable[[int, float, float], None] | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Distil ``pipeline`` (a tiny ``StableDiffusionPipeline``) into LoRA adapters on its U-Net, in place.

    AdamW at a constant ``lr`` on the adapters only, gradient norm clipped at 1, shuffled batches of ``batch``
    latents of ``n_images`` drawings. ``report(step, mean loss, seconds)`` is called every 10 steps. Returns the
    ``peft`` model (in eval mode; ``pipeline.unet`` now carries its adapters) and the loss of every step.
    """
    if steps < 1 or batch < 1 or n_images < batch or 1000 % skip or not 1 <= guidance[0] <= guidance[1]:
        raise ValueError(f"lcm_lora.train: steps {steps} and batch {batch} must be at least 1, n_images "
                         f"{n_images} at least batch, skip {skip} a divisor of 1000, guidance {guidance} a range "
                         "(low, high) with 1 <= low <= high")
    from .tiny_sd import encode_prompts

    config = pipeline.scheduler.config
    alphas_cumprod, prediction_type = lcm_scheduler(config, skip).alphas_cumprod, config["prediction_type"]
    latents, captions = training_set(pipeline, n_images, seed)
    with torch.no_grad():
        texts = encode_prompts(pipeline.tokenizer, pipeline.text_encoder, captions).cpu()
        uncond = encode_prompts(pipeline.tokenizer, pipeline.text_encoder, [""]).cpu()
    pipeline.unet.requires_grad_(False)
    student = add_lora(pipeline.unet, rank, targets, seed).train()
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order, position, losses, start = torch.randperm(n_images, generator=generator), 0, [], time.perf_counter()
    for step in range(1, steps + 1):
        if position + batch > n_images:  # a new epoch, reshuffled
            order, position = torch.randperm(n_images, generator=generator), 0
        idx = order[position: position + batch]
        position += batch
        value = distil_step(student, latents[idx], texts[idx], uncond, skip, alphas_cumprod, prediction_type,
                            generator, guidance, loss)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(value.item())
        if report and (step % 10 == 0 or step == steps):
            report(step, sum(losses[-10:]) / len(losses[-10:]), time.perf_counter() - start)
    return student.eval(), losses


def save_lora(student, folder: str | Path) -> Path:
    """Write the adapters of ``student`` (``train``'s peft model) in diffusers' LoRA format
    (``pytorch_lora_weights.safetensors``, which ``pipeline.load_lora_weights(folder)`` reads) and return the file."""
    from diffusers import StableDiffusionPipeline
    from peft import get_peft_model_state_dict

    layers = {k.removeprefix("base_model.model."): v.detach().contiguous()
              for k, v in get_peft_model_state_dict(student).items()}
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    return Path(folder) / LORA_FILE


def load_lcm_lora(pipeline, folder: str | Path, skip: int = 20):
    """``pipeline`` with the LoRA in ``folder`` loaded into its U-Net and ``LCMScheduler`` on the teacher's grid of
    ``1000 / skip`` steps; sample it at guidance 1 (the guidance is folded in). Returns it.

    The same as ``pipeline.load_lora_weights(folder)``, without its warning that the text encoder has no LoRA."""
    pipeline.unet.load_lora_adapter(folder, prefix="unet", weight_name=LORA_FILE)
    pipeline.scheduler = lcm_scheduler(pipeline.scheduler.config, skip)
    return pipeline
