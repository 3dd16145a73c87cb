"""Chapter 7's checks: the classifier-free-guidance mix, a loss on the wings only, the scale where clipping starts to
hurt, and a DDIM step that clips x0 consistently (against diffusers' ``DDIMScheduler``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import Verdict, checked, right, wrong

SCALES = (0.0, 1.0, 3.0, 7.5)


def _fixed(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """A fixed random tensor: the same for every learner and every run."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


@checked
def check_cfg_combine(cfg_combine: Callable) -> Verdict:
    """``cfg_combine(eps_uncond, eps_cond, scale)`` against diffusers' ``ClassifierFreeGuidance`` guider."""
    from diffusers.guiders import ClassifierFreeGuidance
    from diffusers.utils import logging

    uncond, cond = _fixed(2, 1, 8, 8, seed=1), _fixed(2, 1, 8, 8, seed=2)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the guiders announce themselves as experimental
    try:
        expected = {s: ClassifierFreeGuidance(guidance_scale=s).forward(cond, uncond).pred for s in SCALES}
    finally:
        logging.set_verbosity(verbosity)
    for s in SCALES:
        got = cfg_combine(uncond.clone(), cond.clone(), s)
        if not isinstance(got, torch.Tensor) or got.shape != cond.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return wrong(f"at scale {s:g} it returned {shape}, expected a tensor of shape {tuple(cond.shape)}",
                         f"引导强度 {s:g} 时返回了 {shape}，应为形状 {tuple(cond.shape)} 的张量")
        if not torch.allclose(got, expected[s], atol=1e-5):
            if torch.allclose(got, uncond + s * (uncond - cond), atol=1e-5):
                return wrong(f"at scale {s:g} the difference points the wrong way: use eps_cond - eps_uncond",
                             f"引导强度 {s:g} 时差值方向反了：应为 eps_cond - eps_uncond")
            if torch.allclose(got, cond + s * (cond - uncond), atol=1e-5):
                return wrong(f"at scale {s:g} you start from eps_cond (the paper's w form, which is scale "
                             f"{s + 1:g}); start from eps_uncond",
                             f"引导强度 {s:g} 时你从 eps_cond 出发（论文的 w 写法，"
                             f"相当于引导强度 {s + 1:g}）；应从 eps_uncond 出发")
            off = float((got - expected[s]).abs().max())
            return wrong(f"at scale {s:g} it is off diffusers' ClassifierFreeGuidance by up to {off:.3g}",
                         f"引导强度 {s:g} 时与 diffusers 的 ClassifierFreeGuidance 最多相差 {off:.3g}")
    return right("equal to diffusers' ClassifierFreeGuidance at scales 0, 1, 3 and 7.5",
                 "在引导强度 0、1、3 和 7.5 下都与 diffusers 的 ClassifierFreeGuidance 相同")


def _drawings(colour: str, n: int = 2) -> torch.Tensor:
    """The first ``n`` drawn 32x32 butterflies whose wings are ``colour``, in [0, 1]."""
    from ..data import butterfly_attributes
    from ..metrics import drawn_butterflies

    indices = [i for i in range(400) if butterfly_attributes(i).wing == colour][:n]
    return drawn_butterflies(indices)


@checked
def check_wing_loss(wing_loss: Callable, target: torch.Tensor) -> Verdict:
    """``wing_loss(images)``: zero gradient on the background, some on the butterfly, blue wings below red ones."""
    from ..metrics import butterfly_mask

    target = target.detach().cpu()
    blue, red = _drawings("blue"), _drawings("red")
    images = torch.cat([blue, red]).requires_grad_()
    loss = wing_loss(images)
    if not isinstance(loss, torch.Tensor) or loss.shape != (len(images),):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        return wrong(f"it returned {shape} for {len(images)} images: return one loss per image",
                     f"{len(images)} 张图像返回了 {shape}：应每张图像返回一个损失")
    if not loss.requires_grad:
        return wrong("its result does not depend on the images differentiably: guidance needs a gradient",
                     "结果对图像不可微：引导需要梯度")
    grad = torch.autograd.grad(loss.sum(), images)[0].abs().amax(dim=1)  # (N, H, W)
    mask = butterfly_mask(images.detach())
    outside = float(grad[~mask].max())
    if outside > 1e-8:
        share = float((grad[~mask] > 1e-8).float().mean())
        return wrong(f"its gradient is not zero on the background ({share:.0%} of background pixels, up to "
                     f"{outside:.2g}): multiply by metrics.butterfly_mask(images)",
                     f"它在背景上的梯度不为零（{share:.0%} 的背景像素，最大 {outside:.2g}）：请乘以 "
                     "metrics.butterfly_mask(images)")
    if float(grad[mask].max()) == 0:
        return wrong("its gradient is zero on the butterfly too: the loss must look at the wings",
                     "它在蝴蝶上的梯度也为零：损失必须看翅膀")
    blue_loss, red_loss = loss.detach()[: len(blue)], loss.detach()[len(blue):]
    if float(blue_loss.max()) >= float(red_loss.min()):
        return wrong(f"blue-winged drawings score {blue_loss.tolist()} and red-winged ones {red_loss.tolist()}: "
                     "blue ones (the target colour) should score lower",
                     f"蓝色翅膀的绘制的蝴蝶得分 {blue_loss.tolist()}，"
                     f"红色翅膀的得分 {red_loss.tolist()}：蓝色（目标颜色）应更低")
    return right("zero gradient on the background, not on the butterfly, and blue wings score below red ones",
                 "背景上梯度为零、蝴蝶上不为零，蓝色翅膀的损失低于红色翅膀")


@checked
def check_breaking_scale(answer: float, shares: dict[float, float], at_least: float = 0.8) -> Verdict:
    """``answer``: the largest scale of the learner's clip_sample=True sweep (``shares``) still at ``at_least``."""
    holding = [s for s, share in shares.items() if share >= at_least]
    expected = max(holding, default=0)
    table = ", ".join(f"{s:g}: {share:.0%}" for s, share in shares.items())
    if answer == expected:
        return right(f"scale {expected:g} is the last one at {at_least:.0%} or more in your sweep ({table})",
                     f"引导强度 {expected:g} 是你的扫描中最后一个不低于 {at_least:.0%} 的（{table}）")
    if answer not in shares and answer != 0:
        return wrong(f"{answer} is not one of the swept scales ({table})",
                     f"{answer} 不是扫描过的引导强度之一（{table}）")
    if answer != 0 and shares[answer] < at_least:
        return wrong(f"at scale {answer:g} only {shares[answer]:.0%} show the digit asked for ({table}): lower",
                     f"引导强度 {answer:g} 时只有 {shares[answer]:.0%} 显示所要的数字（{table}）：应更低")
    return wrong(f"a higher scale still holds up in your sweep ({table})",
                 f"你的扫描中更高的引导强度仍然达标（{table}）")


@checked
def check_ddim_step(ddim_step_clipped: Callable) -> Verdict:
    """``ddim_step_clipped(v, x_t, a_t, a_prev)`` against ``DDIMScheduler.step(..., use_clipped_model_output=True)``."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=True)
    scheduler.set_timesteps(20)
    x_t, v = _fixed(2, 1, 8, 8, seed=3), _fixed(2, 1, 8, 8, seed=4, scale=3.0)  # large: x0 goes out of range
    gap = 1000 // 20
    for t in (int(scheduler.timesteps[0]), int(scheduler.timesteps[10]), int(scheduler.timesteps[-1])):
        a_t = scheduler.alphas_cumprod[t]
        a_prev = scheduler.alphas_cumprod[t - gap] if t - gap >= 0 else scheduler.final_alpha_cumprod
        expected = scheduler.step(v, t, x_t, use_clipped_model_output=True).prev_sample
        got = ddim_step_clipped(v.clone(), x_t.clone(), a_t.clone(), a_prev.clone())
        if not isinstance(got, torch.Tensor) or got.shape != x_t.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return wrong(f"at t = {t} it returned {shape}, expected shape {tuple(x_t.shape)}",
                         f"t = {t} 时返回了 {shape}，应为形状 {tuple(x_t.shape)}")
        if not torch.allclose(got, expected, atol=1e-4):
            unclipped_eps = scheduler.step(v, t, x_t, use_clipped_model_output=False).prev_sample
            if torch.allclose(got, unclipped_eps, atol=1e-4):
                return wrong(f"at t = {t} it matches the default step, which keeps the unclipped noise: recompute "
                             "eps from the clipped x0", f"t = {t} 时它与默认的步骤相同（保留了未裁剪的噪声）："
                             "请用裁剪后的 x0 重新计算 eps")
            off = float((got - expected).abs().max())
            return wrong(f"at t = {t} it is off DDIMScheduler.step(use_clipped_model_output=True) by up to {off:.3g}",
                         f"t = {t} 时与 DDIMScheduler.step(use_clipped_model_output=True) 最多相差 {off:.3g}")
    return right("equal to DDIMScheduler.step(..., use_clipped_model_output=True) at three timesteps",
                 "在三个时间步上都与 DDIMScheduler.step(..., use_clipped_model_output=True) 相同")
