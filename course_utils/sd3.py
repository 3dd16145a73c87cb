"""Stable Diffusion 3 in miniature (chapter 13): diffusers' ``SD3Transformer2DModel`` (an MM-DiT) on the latents of
``tiny-sd-butterflies``' VAE, read through its CLIP text encoder, assembled into the real ``StableDiffusion3Pipeline``.

How the tiny parts fit the pipeline (``benchmarks/tiny_sd3.py`` checks each and records what fails otherwise):

- the VAE as it is, with ``shift_factor`` 0.0 (the pipeline decodes ``latents / scaling_factor + shift_factor``);
- SD3 reads two CLIP encoders (penultimate hidden states side by side, projected pooled vectors side by side) and a
  T5: here one CLIP serves as both, copied into a ``CLIPTextModelWithProjection`` whose projection is the identity,
  and the T5 is dropped (``text_encoder_3=None``: the pipeline puts ``max_sequence_length`` zero tokens in its place;
  the course trains and samples with ``max_sequence_length=0``, so there are none);
- the transformer's ``joint_attention_dim`` and ``pooled_projection_dim`` are the two CLIP widths side by side, its
  ``caption_projection_dim`` its own width (text and image tokens meet in one attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
from diffusers.training_utils import compute_density_for_timestep_sampling
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from . import tiny_sd

LATENT_SIZE, LATENT_CHANNELS = 8, 4  # tiny-sd-butterflies' VAE: a 32 px image is 4 x 8 x 8 latents
NO_T5 = dict(max_sequence_length=0)  # pass to the pipeline's call: no zero tokens in the dropped T5's place


def clip_with_projection(clip) -> CLIPTextModelWithProjection:
    """The tiny ``CLIPTextModel``'s weights in a ``CLIPTextModelWithProjection`` whose projection is the identity
    (so its pooled vector is the trained encoder's own: the final-layer-normed end token). Frozen."""
    config = CLIPTextConfig(**{**clip.config.to_dict(), "projection_dim": clip.config.hidden_size})
    encoder = CLIPTextModelWithProjection(config)
    # transformers 5: CLIPTextModel holds the text transformer's parts itself, the projection model as text_model
    encoder.text_model.load_state_dict(clip.state_dict())
    with torch.no_grad():
        encoder.text_projection.weight.copy_(torch.eye(config.hidden_size))
    return encoder.eval().requires_grad_(False)


def transformer_config(text_width: int, patch_size: int = 2, num_layers: int = 4, num_attention_heads: int = 4,
                       attention_head_dim: int = 32) -> dict:
    """``SD3Transformer2DModel``'s settings for 4 x 8 x 8 latents and two ``text_width``-wide CLIP encoders."""
    return dict(sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
                patch_size=patch_size, num_layers=num_layers, num_attention_heads=num_attention_heads,
                attention_head_dim=attention_head_dim,
                joint_attention_dim=2 * text_width,  # CLIP 1 and CLIP 2 side by side; no T5 to pad to
                pooled_projection_dim=2 * text_width,  # the two pooled vectors side by side
                caption_projection_dim=num_attention_heads * attention_head_dim,  # text enters at the image's width
                pos_embed_max_size=LATENT_SIZE // patch_size)  # a saved table: no bigger than the latents need


def assemble(vae, tokenizer, encoder, transformer, shift: float = 1.0) -> StableDiffusion3Pipeline:
    """diffusers' ``StableDiffusion3Pipeline`` from the tiny parts: ``encoder`` as both CLIP encoders, no T5."""
    vae.register_to_config(shift_factor=0.0)  # the tiny SD's VAE has none (null), which the pipeline cannot add
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
                                    vae=vae, text_encoder=encoder, tokenizer=tokenizer, text_encoder_2=encoder,
                                    tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def encode_captions(tokenizer, encoder, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``pipe.encode_prompt(..., max_sequence_length=0)`` gives for the tiny parts: the penultimate hidden
    states of both CLIP encoders side by side (the same encoder twice), and the pooled vectors side by side."""
    out = encoder(tiny_sd.token_ids(tokenizer, prompts).to(encoder.device), output_hidden_states=True)
    hidden, pooled = out.hidden_states[-2], out.text_embeds
    return torch.cat([hidden, hidden], dim=-1), torch.cat([pooled, pooled], dim=-1)


def shifted_sigmas(u: torch.Tensor, shift: float, n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise level and timestep of training draws ``u`` in (0, 1), as SD3's script takes them: the index
    floor(u n) into the scheduler's shifted table, sigma = shift s / (1 + (shift - 1) s) with s = 1 - index / n."""
    s = 1 - (u * n).long().float() / n
    sigma = shift * s / (1 + (shift - 1) * s)
    return sigma, sigma * n


def flow_matching_loss(transformer, x0: torch.Tensor, text: torch.Tensor, pooled: torch.Tensor, shift: float,
                       generator: torch.Generator, logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """SD3's loss on clean latents ``x0``: u logit-normal, sigma from the shifted table, x_t = (1 - sigma) x0 +
    sigma noise, the target noise - x0, the plain mean squared error. Random draws from ``generator`` (CPU)."""
    u = compute_density_for_timestep_sampling("logit_normal", len(x0), logit_mean=logit_mean, logit_std=logit_std,
                                              generator=generator)
    sigma, timestep = shifted_sigmas(u, shift)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    s = sigma.to(x0.device).view(-1, 1, 1, 1)
    x_t = (1 - s) * x0 + s * noise
    prediction = transformer(hidden_states=x_t, timestep=timestep.to(x0.device), encoder_hidden_states=text,
                             pooled_projections=pooled, return_dict=False)[0]
    return F.mse_loss(prediction.float(), (noise - x0).float())


def load_sd3(folder, dtype: torch.dtype = torch.float32) -> StableDiffusion3Pipeline:
    """A saved tiny SD3 pipeline, offline: ``text_encoder_3`` and ``tokenizer_3`` passed as None (the folder has
    none, and ``from_pretrained`` refuses to leave them out)."""
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None, dtype=dtype,
                                                    use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe
