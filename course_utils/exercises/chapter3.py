"""Chapter 3's exercises: the forward process by hand, one training step, the flip augmentation, the v target."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from ..diffusion import ddpm_target
from . import Verdict, checked, right, wrong


def _scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """Chapter 3's scheduler: 1,000 steps of the cosine schedule."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)


def _tiny_unet() -> UNet2DModel:
    """A small U-Net with fixed random weights (seconds to run on a CPU)."""
    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def _batch(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Clean images in [-1, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _first_gap(mine: torch.Tensor, ref: torch.Tensor, t: torch.Tensor) -> tuple[int, float]:
    """The timestep of the image where ``mine`` is furthest from ``ref``, and that largest gap."""
    gap = (mine - ref).abs().flatten(1).amax(1)
    worst = int(gap.argmax())
    return int(t[worst]), float(gap[worst])


def _inputs(prediction_type: str = "epsilon") -> tuple[DDPMScheduler, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A scheduler, clean images, their noise and 8 timesteps from 0 to 999: what the formula checks feed in."""
    clean = _batch()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    return _scheduler(prediction_type), clean, noise, torch.tensor([0, 10, 100, 250, 500, 750, 900, 999])


def _misshapen(name: str, got, like: torch.Tensor) -> Verdict | None:
    """A "wrong" verdict if ``got`` is not a tensor shaped like ``like``, else None."""
    if isinstance(got, torch.Tensor) and got.shape == like.shape:
        return None
    shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    return wrong(f"{name} returned {shape}; it should return a tensor shaped like clean, {tuple(like.shape)}",
                 f"{name} 返回了 {shape}；应返回与 clean 同形状 {tuple(like.shape)} 的张量")


@checked
def check_add_noise(add_noise: Callable) -> Verdict:
    """``add_noise(scheduler, clean, noise, t)`` must equal ``DDPMScheduler.add_noise(clean, noise, t)``."""
    scheduler, clean, noise, t = _inputs()
    mine = add_noise(scheduler, clean, noise, t)
    if (misshapen := _misshapen("add_noise", mine, clean)) is not None:
        return misshapen
    ref = scheduler.add_noise(clean, noise, t)
    if not torch.allclose(mine, ref, atol=1e-5):
        at, gap = _first_gap(mine, ref, t)
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        if torch.allclose(mine, a * clean + (1 - a) * noise, atol=1e-5):
            hint = "the two weights are sqrt(alphas_cumprod[t]) and sqrt(1 - alphas_cumprod[t]), not their squares"
            hint_zh = "两个系数是 sqrt(alphas_cumprod[t]) 和 sqrt(1 - alphas_cumprod[t])，不是它们的平方"
        else:
            hint = "x_t = sqrt(alphas_cumprod[t])·clean + sqrt(1 - alphas_cumprod[t])·noise, at each image's own t"
            hint_zh = "x_t = sqrt(alphas_cumprod[t])·clean + sqrt(1 - alphas_cumprod[t])·noise，t 取每张图自己的时间步"
        return wrong(f"at t = {at} your noisy image is off by up to {gap:.3g} from DDPMScheduler.add_noise: {hint}",
                     f"在 t = {at} 处，你的加噪图像与 DDPMScheduler.add_noise 最多相差 {gap:.3g}：{hint_zh}")
    return right("your add_noise equals DDPMScheduler.add_noise at 8 timesteps from 0 to 999",
                 "你的 add_noise 在 0 到 999 的 8 个时间步上都等于 DDPMScheduler.add_noise")


def reference_training_step(model: UNet2DModel, scheduler: DDPMScheduler, clean: torch.Tensor,
                            generator: torch.Generator) -> torch.Tensor:
    """Chapter 3's training step, noise then timesteps drawn from ``generator``: the loss against the target
    of ``scheduler.config.prediction_type`` (not yet stepped)."""
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator)
    return F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, ddpm_target(scheduler, clean, noise, t))


@checked
def check_training_step(training_step: Callable) -> Verdict:
    """``training_step(model, scheduler, clean, generator)`` must give the reference step's loss on the same seed,
    for each of the three targets (``scheduler.config.prediction_type``)."""
    model, clean = _tiny_unet(), _batch()
    for kind in ("epsilon", "v_prediction", "sample"):
        scheduler = _scheduler(kind)
        mine = training_step(model, scheduler, clean, torch.Generator().manual_seed(0))
        if not isinstance(mine, torch.Tensor) or mine.ndim != 0:
            return wrong(f"training_step returned {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}; return "
                         "the loss, one number (a 0-d tensor such as F.mse_loss gives)",
                         f"training_step 返回了 {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}；"
                         "应返回损失，一个数（F.mse_loss 给出的 0 维张量）")
        if not mine.requires_grad:
            return wrong("the loss has no gradient: compute it from the model's output (no torch.no_grad, no .item())",
                         "损失没有梯度：要由模型的输出计算（不要用 torch.no_grad，也不要 .item()）")
        with torch.no_grad():
            ref = reference_training_step(model, scheduler, clean, torch.Generator().manual_seed(0))
            eps = reference_training_step(model, _scheduler("epsilon"), clean, torch.Generator().manual_seed(0))
        if torch.allclose(mine, ref, rtol=1e-4):
            continue
        if kind != "epsilon" and torch.allclose(mine, eps, rtol=1e-4):
            return wrong(f"for prediction_type={kind!r} your loss is still the noise target's: pick the target from "
                         "scheduler.config.prediction_type (v: scheduler.get_velocity(clean, noise, t); sample: clean)",
                         f"prediction_type={kind!r} 时你的损失仍是噪声目标的：请按 scheduler.config.prediction_type "
                         "选目标（v：scheduler.get_velocity(clean, noise, t)；sample：clean）")
        return wrong(f"for prediction_type={kind!r} your loss is {mine.item():.5f}, the reference step's "
                     f"{ref.item():.5f}: draw the noise first (torch.randn, Gaussian, not torch.rand) then t "
                     "(torch.randint(0, 1000, ...)), both from the generator, noise the batch with scheduler.add_noise "
                     "and take the MSE against the target",
                     f"prediction_type={kind!r} 时你的损失是 {mine.item():.5f}，参考步骤是 {ref.item():.5f}："
                     "先从 generator 取噪声（torch.randn，高斯噪声，不是 torch.rand），再取 t"
                     "（torch.randint(0, 1000, ...)），用 scheduler.add_noise 加噪，再与目标求 MSE")
    return right("your loss is the reference step's on the same seed, for the ε, v and x₀ targets",
                 "同一种子下，你的损失对 ε、v、x₀ 三种目标都与参考步骤相同")


@checked
def check_random_flip(random_flip: Callable) -> Verdict:
    """``random_flip(images, generator)`` must mirror each image left-right with probability 1/2, nothing else."""
    images = _batch(n=400, size=8, seed=2)
    out = random_flip(images, torch.Generator().manual_seed(0))
    if not isinstance(out, torch.Tensor) or out.shape != images.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return wrong(f"random_flip returned {shape}; it should keep the batch's shape {tuple(images.shape)}",
                     f"random_flip 返回了 {shape}；应保持批次的形状 {tuple(images.shape)}")
    kept = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    upside_down = (out == images.flip(-2)).flatten(1).all(1)
    if (upside_down & ~kept).any() and not (mirrored & ~kept).any():
        return wrong("your flip turns images upside down (the height axis): mirror the width, the last axis",
                     "你的翻转把图像上下颠倒了（高度轴）：应沿宽度，也就是最后一个轴，左右镜像")
    odd = int((~(kept | mirrored)).sum())
    if odd:
        return wrong(f"{odd} of 400 images are neither the original nor its left-right mirror: flip whole images, "
                     "one coin per image, and change nothing else",
                     f"400 张图里有 {odd} 张既不是原图也不是左右镜像：每张图抛一次硬币，整张翻转，其余不变")
    share = float((mirrored & ~kept).float().mean())
    if not 0.4 <= share <= 0.6:
        return wrong(f"{share:.0%} of the images were mirrored; with probability 1/2 it should be about half",
                     f"{share:.0%} 的图像被镜像了；概率为 1/2 时应约为一半")
    return right(f"every image is itself or its mirror, and {share:.0%} were mirrored",
                 f"每张图都是原图或其镜像，其中 {share:.0%} 被镜像")


@checked
def check_velocity(velocity: Callable) -> Verdict:
    """``velocity(scheduler, clean, noise, t)`` must equal ``DDPMScheduler.get_velocity(clean, noise, t)``."""
    scheduler, clean, noise, t = _inputs("v_prediction")
    mine = velocity(scheduler, clean, noise, t)
    if (misshapen := _misshapen("velocity", mine, clean)) is not None:
        return misshapen
    ref = scheduler.get_velocity(clean, noise, t)
    if torch.allclose(mine, -ref, atol=1e-5):
        return wrong("your velocity has the wrong sign: v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x₀",
                     "你的速度符号反了：v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x₀")
    if not torch.allclose(mine, ref, atol=1e-5):
        at, gap = _first_gap(mine, ref, t)
        return wrong(f"at t = {at} your velocity is off by up to {gap:.3g} from DDPMScheduler.get_velocity: "
                     "v = sqrt(ᾱ_t)·noise − sqrt(1 − ᾱ_t)·clean",
                     f"在 t = {at} 处，你的速度与 DDPMScheduler.get_velocity 最多相差 {gap:.3g}："
                     "v = sqrt(ᾱ_t)·noise − sqrt(1 − ᾱ_t)·clean")
    return right("your velocity equals DDPMScheduler.get_velocity at 8 timesteps from 0 to 999",
                 "你的速度在 0 到 999 的 8 个时间步上都等于 DDPMScheduler.get_velocity")
