"""Chapter 8's exercises: img2img's start, classifier-free guidance, the VAE's scaling factor (checked offline)."""

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
def check_guided_noise(guided_noise: Callable) -> Verdict:
    """Exercise 2: ``guided_noise(eps_empty, eps_text, scale)`` is classifier-free guidance (Ho & Salimans, 2022)."""
    g = torch.Generator().manual_seed(0)
    eps_empty, eps_text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for scale in (0.0, 1.0, 5.0, 7.5):
        got = guided_noise(eps_empty.clone(), eps_text.clone(), scale)
        want = eps_empty + scale * (eps_text - eps_empty)
        if (off := wrong_shape(got, want, f"at scale {scale} it", f"引导强度 {scale} 时")) is not None:
            return off
        if not torch.allclose(got, want, atol=1e-5):
            hint = {0.0: ("scale 0 must give the empty prompt's prediction", "引导强度 0 应得到空提示词的预测"),
                    1.0: ("scale 1 must give the prompt's prediction alone", "引导强度 1 应只得到提示词的预测")}.get(
                scale, ("start from the empty prompt's prediction and go s times the difference towards the prompt's",
                        "从空提示词的预测出发，朝提示词的预测方向走 s 倍的差"))
            return wrong(f"at scale {scale} it is off by {(got - want).abs().max():.3g}: {hint[0]}",
                         f"引导强度 {scale} 时偏差 {(got - want).abs().max():.3g}：{hint[1]}")
    return right("ε(∅) + s·(ε(prompt) − ε(∅)) at scales 0, 1, 5 and 7.5: the empty prompt at 0, the prompt at 1",
                 "引导强度 0、1、5、7.5 下都等于 ε(∅) + s·(ε(prompt) − ε(∅))：0 是空提示词，1 是提示词本身")


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
