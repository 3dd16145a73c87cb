"""Chapter 8's exercises: img2img's start, a negative prompt's embeddings, the VAE's scaling factor (offline)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from . import Verdict, checked, right, wrong, wrong_shape


def _scheduler():
    """The shipped model's DDIM scheduler (Stable Diffusion 1.x's schedule, steps offset by 1)."""
    from diffusers import DDIMScheduler

    from ..tiny_sd import SCHEDULE

    return DDIMScheduler(**SCHEDULE, steps_offset=1, set_alpha_to_one=False)


def img2img_start(strength: float, steps: int = 50) -> int:
    """The timestep StableDiffusionImg2ImgPipeline starts denoising at, for ``strength`` and ``steps``."""
    from diffusers import StableDiffusionImg2ImgPipeline

    scheduler = _scheduler()
    scheduler.set_timesteps(steps)
    timesteps, kept = StableDiffusionImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=scheduler), steps,
                                                                   strength, "cpu")
    return int(timesteps[0]) if kept else -1


@checked
def check_strength_for_t600(strength: float, steps: int = 50) -> Verdict:
    """Exercise 1: the img2img strength whose first step, of ``steps`` DDIM steps, is the timestep nearest 600."""
    scheduler = _scheduler()
    scheduler.set_timesteps(steps)
    nearest = min((int(t) for t in scheduler.timesteps), key=lambda t: abs(t - 600))
    got = img2img_start(float(strength), steps)
    kept = min(int(steps * float(strength)), steps)
    if got != nearest:
        return wrong(f"strength {strength} keeps int({strength} × {steps}) = {kept} of the {steps} steps, so img2img "
                     f"starts at t = {got}; the timestep nearest 600 is {nearest}",
                     f"重绘强度 {strength} 保留 {steps} 步中的 int({strength} × {steps}) = {kept} 步，"
                     f"图生图从 t = {got} 开始；离 600 最近的时间步是 {nearest}")
    return right(f"strength {strength} keeps {kept} of {steps} steps: StableDiffusionImg2ImgPipeline starts at "
                 f"t = {got}, the timestep nearest 600", f"重绘强度 {strength} 保留 {steps} 步中的 {kept} 步："
                 f"StableDiffusionImg2ImgPipeline 从 t = {got} 开始，即离 600 最近的时间步")


@checked
def check_negative_prompt(embed_pair: Callable, tokenizer, text_encoder) -> Verdict:
    """Exercise 2: ``embed_pair(tokenizer, text_encoder, prompt, negative)`` is what the U-Net reads under
    classifier-free guidance with a negative prompt: the negative's embeddings first, then the prompt's, as
    ``StableDiffusionPipeline.encode_prompt`` makes them."""
    from diffusers import StableDiffusionPipeline

    prompt, negative = "a red butterfly on a white background", "a blue background"
    parts = SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder)  # all encode_prompt reads of a pipeline
    with torch.no_grad():
        text, uncond = StableDiffusionPipeline.encode_prompt(parts, prompt, text_encoder.device, 1, True,
                                                             negative_prompt=negative)
        want = torch.cat([uncond, text])
        got = embed_pair(tokenizer, text_encoder, prompt, negative)
    if hasattr(got, "shape") and got.ndim == 3 and len(got) == 2 and got.shape[1] != want.shape[1]:
        return wrong(f"{got.shape[1]} positions, the pipeline's have {want.shape[1]}: pad both prompts to "
                     "tokenizer.model_max_length (padding='max_length', truncation=True)",
                     f"{got.shape[1]} 个位置，管线的是 {want.shape[1]} 个：把两个提示词都填充到 "
                     "tokenizer.model_max_length（padding='max_length'，truncation=True）")
    if (off := wrong_shape(got, want, "the pair", "这一对嵌入")) is not None:
        return off
    got = got.to(want)
    if torch.allclose(got, want, atol=1e-5):
        return right("the negative prompt's embeddings, then the prompt's: the pair encode_prompt gives the U-Net",
                     "先是负面提示词的嵌入，再是提示词的：与 encode_prompt 交给 U-Net 的一对相同")
    if torch.allclose(got, torch.cat([text, uncond]), atol=1e-5):
        return wrong("the two are swapped: the pipeline puts the negative (unconditional) embeddings first",
                     "两者顺序反了：管线把负面（无条件）嵌入放在前面")
    with torch.no_grad():
        empty = StableDiffusionPipeline.encode_prompt(parts, prompt, text_encoder.device, 1, True)[1]
    if torch.allclose(got[:1], empty, atol=1e-5):
        return wrong("the first half is the empty prompt's: the negative prompt takes its place",
                     "前一半是空提示词的嵌入：负面提示词应该取代它的位置")
    return wrong(f"off by {(got - want).abs().max():.3g}: tokenize both with padding='max_length', "
                 "max_length=tokenizer.model_max_length and truncation=True, then take text_encoder(ids)[0]",
                 f"偏差 {(got - want).abs().max():.3g}：两个都用 padding='max_length'、"
                 "max_length=tokenizer.model_max_length、truncation=True 分词，再取 text_encoder(ids)[0]")


def _vae():
    """A small random AutoencoderKL with Stable Diffusion 1.x's scaling factor (so forgetting it shows)."""
    from diffusers import AutoencoderKL

    from ..tiny_sd import vae_config

    torch.manual_seed(0)
    small = dict(block_out_channels=(16, 16, 16), norm_num_groups=8)  # tiny, so the check takes a blink
    return AutoencoderKL(**{**vae_config(16), **small}, scaling_factor=0.18215).eval()


@checked
def check_vae_round_trip(to_latents: Callable, to_images: Callable) -> Verdict:
    """Exercise 3: images in [0, 1] -> scaled latents (the mean) -> images in [0, 1], as the pipelines do it."""
    from diffusers.image_processor import VaeImageProcessor

    vae = _vae()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        got = to_latents(vae, images)
        if (off := wrong_shape(got, want, "to_latents", "to_latents ")) is not None:
            return off
        if not torch.allclose(got, want, atol=1e-4):
            ratio = (got.std() / want.std()).item()
            hint = (("multiply by vae.config.scaling_factor", "要乘以 vae.config.scaling_factor")
                    if abs(ratio * vae.config.scaling_factor - 1) < 0.05 else
                    ("map the images from [0, 1] to [-1, 1] first, and take latent_dist.mean",
                     "先把图像从 [0, 1] 映射到 [-1, 1]，并取 latent_dist.mean"))
            return wrong(f"to_latents is off by {(got - want).abs().max():.3g}: {hint[0]}",
                         f"to_latents 偏差 {(got - want).abs().max():.3g}：{hint[1]}")
        back = to_images(vae, want)
        reference = VaeImageProcessor().postprocess(vae.decode(want / vae.config.scaling_factor).sample,
                                                    output_type="pt")
    if (off := wrong_shape(back, reference, "to_images", "to_images ")) is not None:
        return off
    if not torch.allclose(back.float(), reference, atol=1e-4):
        return wrong(f"to_images is off by {(back - reference).abs().max():.3g} from the pipelines' decoding: divide "
                     "by vae.config.scaling_factor before decoding, then map [-1, 1] to [0, 1] and clamp",
                     f"to_images 与管线的解码相差 {(back - reference).abs().max():.3g}：解码前先除以 "
                     "vae.config.scaling_factor，再把 [-1, 1] 映射到 [0, 1] 并截断")
    return right("encoded and decoded as the pipelines do (VaeImageProcessor.postprocess agrees), with the scaling "
                 "factor read from vae.config", "编码与解码和管线一致（与 VaeImageProcessor.postprocess 相符），"
                 "缩放因子取自 vae.config")
