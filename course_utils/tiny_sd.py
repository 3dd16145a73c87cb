"""A tiny Stable Diffusion, every part a real library class (chapters 8 and 9).

The parts of ``StableDiffusionPipeline``, built small so that a CPU trains them in minutes:

- ``AutoencoderKL``: 32x32 RGB images <-> 4x8x8 latents (three blocks: two halvings);
- ``CLIPTokenizer``: a vocabulary the course writes for its captions (``write_tokenizer``), with CLIP's
  byte-pair-encoding rules, so every word of the caption grammar is one token;
- ``CLIPTextModel``: two transformer layers, 64 wide;
- ``UNet2DConditionModel``: reads the text embeddings through cross-attention;
- ``DDPMScheduler`` for training, ``DDIMScheduler`` in the saved pipeline.

The caption grammar (``CAPTION_FORMS``): the synthetic butterflies' wing colour (``data.WING_COLOURS``) and
background colour (``data.BACKGROUNDS``) in one of three sentences, or the empty prompt (classifier-free
guidance):

    a red butterfly on a blue background
    a red butterfly            (any background)
    a butterfly on a blue background   (any wings)
    an orange butterfly ...    ("an" before a vowel)

``course_utils.train_text_to_image`` trains it; ``course_utils.pretrained.load("tiny-sd-butterflies")`` loads
the shipped one.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .data import BACKGROUNDS, WING_COLOURS, article

CAPTION_FORMS = (
    "{a_wing} {wing} butterfly on a {background} background",
    "{a_wing} {wing} butterfly",
    "a butterfly on a {background} background",
)
# How often training shows each form (the rest: the empty prompt, the "no caption" of classifier-free guidance).
FORM_SHARES = (0.6, 0.2, 0.1)
MAX_LENGTH = 16  # tokens, with the start and end tokens: the longest caption has 9 (the pipeline pads to this)
START, END = "<|startoftext|>", "<|endoftext|>"


def caption(wing: str | None = None, background: str | None = None) -> str:
    """The sentence of the grammar that names what is given: both colours, one of them, or neither ("")."""
    if wing is not None and background is not None:
        return CAPTION_FORMS[0].format(a_wing=article(wing), wing=wing, background=background)
    if wing is not None:
        return CAPTION_FORMS[1].format(a_wing=article(wing), wing=wing)
    if background is not None:
        return CAPTION_FORMS[2].format(background=background)
    return ""


def all_captions() -> list[str]:
    """Every sentence of the grammar (the empty prompt included)."""
    out = [caption(w, b) for w in WING_COLOURS for b in BACKGROUNDS]
    out += [caption(w) for w in WING_COLOURS] + [caption(background=b) for b in BACKGROUNDS]
    return [*out, ""]


def random_caption(wing: str, background: str, rng: np.random.Generator) -> str:
    """A training caption for a drawing: the full sentence, a part of it, or (the rest) the empty prompt."""
    form = rng.choice(len(FORM_SHARES) + 1, p=[*FORM_SHARES, 1 - sum(FORM_SHARES)])
    return (caption(wing, background), caption(wing), caption(background=background), "")[form]


# ---- The tokenizer: CLIP's byte-pair encoding over a vocabulary written for the grammar ----------------------


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair encoding, learned: merge the most frequent adjacent pair until every word is one symbol.

    Words are split into characters, the last one marked ``</w>`` (CLIP's end-of-word). Ties go to the
    alphabetically first pair, so the merges are the same on every machine.
    """
    pieces = {w: [*w[:-1], w[-1] + "</w>"] for w in sorted(set(words))}
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(p for seq in pieces.values() for p in zip(seq, seq[1:], strict=False))
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, seq in pieces.items():
            merged, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    merged.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    merged.append(seq[i])
                    i += 1
            pieces[w] = merged


def grammar_words() -> list[str]:
    """The words of every caption the grammar makes."""
    return sorted({w for c in all_captions() for w in c.split()})


def write_tokenizer(folder: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` (CLIP's file formats) for the caption grammar into ``folder``
    and return it; ``CLIPTokenizer.from_pretrained(folder)`` then reads them.

    The vocabulary: the 26 letters (alone and word-final, so an unknown word still encodes, letter by letter),
    every merged symbol, and CLIP's start and end tokens (the end token also pads, as in Stable Diffusion 1.x).
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(grammar_words())
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    symbols = letters + [c + "</w>" for c in letters] + ["".join(m) for m in merges]
    vocab = {s: i for i, s in enumerate(dict.fromkeys([*symbols, START, END]))}
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=END,
                              model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(folder)
    return folder


# ---- The models' configurations --------------------------------------------------------------------------


def vae_config(resolution: int = 32) -> dict:
    """``AutoencoderKL``: 3 blocks (32, 64, 64 channels), one ResNet each: (3, R, R) -> (4, R/4, R/4)."""
    return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=resolution, layers_per_block=1,
                block_out_channels=(32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=32)


def text_encoder_config(vocab_size: int, bos: int, eos: int) -> dict:
    """``CLIPTextConfig``: 2 layers, 64 wide, 4 heads, 16 positions."""
    return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_LENGTH, bos_token_id=bos, eos_token_id=eos,
                pad_token_id=eos)


def unet_config(latent_size: int = 8) -> dict:
    """``UNet2DConditionModel`` on 4-channel latents: (32, 64, 128) channels, cross-attention to 64-wide text
    (``benchmarks/tiny_sd_sizes.py`` measures its step time against a wider one)."""
    return dict(sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=(32, 64, 128),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=64, attention_head_dim=4, norm_num_groups=32)


# Stable Diffusion 1.x's noise schedule.
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                clip_sample=False, prediction_type="epsilon")


def build_parts(tokenizer_folder: str | Path, resolution: int = 32, seed: int = 0) -> dict:
    """Fresh (untrained) parts: ``vae``, ``tokenizer``, ``text_encoder``, ``unet``, ``noise_scheduler``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config(resolution))
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config(
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)))
    unet = UNet2DConditionModel(**unet_config(resolution // 2 ** (len(vae.config.block_out_channels) - 1)))
    return dict(vae=vae, tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
                noise_scheduler=DDPMScheduler(**SCHEDULE))


def assemble(vae, text_encoder, tokenizer, unet, scheduler_config: dict | None = None):
    """A ``StableDiffusionPipeline`` from the parts, with a DDIM scheduler and no safety checker.

    No safety checker: it is a 1.2 GB image classifier for photographs; the course's model draws only
    synthetic butterflies named by 10 colour words, so there is nothing for it to find (and offline there is none).
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(**{**SCHEDULE, **(scheduler_config or {}), "steps_offset": 1, "set_alpha_to_one": False})
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def token_ids(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids (N, the tokenizer's length): start token, the words, end token, padded with the end token."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Text embeddings (N, MAX_LENGTH, width): ``token_ids`` through the text encoder, its last hidden state."""
    return text_encoder(token_ids(tokenizer, prompts).to(text_encoder.device))[0]


def text_predictor(unet, text: torch.Tensor, uncond: torch.Tensor | None = None, guidance_scale: float = 1.0):
    """``predict(x, t)``: the U-Net's noise prediction for latents x given text embeddings, with classifier-free
    guidance ``uncond + s * (cond - uncond)`` when ``uncond`` (the empty prompt's embeddings) and ``s`` != 1 are
    given. For ``sampling.ddim_invert`` / ``ddim_regenerate``."""

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        if uncond is None or guidance_scale == 1:
            return unet(x, t, encoder_hidden_states=text.expand(len(x), -1, -1)).sample
        both = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat(
            [uncond.expand(len(x), -1, -1), text.expand(len(x), -1, -1)])).sample
        eps_uncond, eps_text = both.chunk(2)
        return eps_uncond + guidance_scale * (eps_text - eps_uncond)

    return predict


@torch.no_grad()
def encode_images(vae, images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1] -> the VAE's latents (the mean of its distribution), times its scaling factor."""
    return vae.encode(images.to(vae.device, vae.dtype) * 2 - 1).latent_dist.mean * vae.config.scaling_factor


@torch.no_grad()
def latent_posteriors(vae, images: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's latent distribution (mean, std) of each image in [-1, 1], encoded once in batches of 250 on
    ``device``; a training step draws from them (``sample_latents``), as the training scripts do."""
    posteriors = [vae.encode(batch.to(device)).latent_dist for batch in images.split(250)]
    return torch.cat([p.mean for p in posteriors]), torch.cat([p.std for p in posteriors])


def sample_latents(vae, mean: torch.Tensor, std: torch.Tensor, index: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """One draw from the posteriors ``index`` (the noise from ``generator``, on the CPU), times the VAE's scaling
    factor: the latents the denoiser learns on."""
    noise = torch.randn(mean[index].shape, generator=generator).to(mean.device)
    return (mean[index] + std[index] * noise) * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images (N, 3, H, W) in [0, 1] on the CPU."""
    return ((vae.decode(latents / vae.config.scaling_factor).sample.float() + 1) / 2).clamp(0, 1).cpu()


@torch.no_grad()
def generate(pipeline, prompts: list[str], guidance_scale: float = 5.0, steps: int = 50, seed: int = 0,
             **kwargs) -> torch.Tensor:
    """The pipeline's images for ``prompts`` as (N, 3, H, W) in [0, 1] on the CPU, from a seeded CPU generator
    (so a GPU and a CPU start from the same noise). ``kwargs`` go to the pipeline (e.g. ``latents``)."""
    generator = torch.Generator().manual_seed(seed)
    out = pipeline(prompts, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
                   output_type="pt", **kwargs)
    return out.images.float().cpu()


def held_out_drawings(n: int, size: int = 32, start: int = 200_000):
    """``n`` drawn butterflies never used in training (from index ``start``), in [0, 1], and their attributes."""
    from .data import butterfly_attributes
    from .metrics import drawn_butterflies

    indices = range(start, start + n)
    return drawn_butterflies(indices, size=size), [butterfly_attributes(i) for i in indices]
