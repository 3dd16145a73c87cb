"""Chapter 2's exercises, each checked against the diffusers ``DDPMScheduler`` that does the same: the forward
process (``add_noise``), the velocity target (``get_velocity``), where the cosine schedule's ᾱ_t falls below 0.5,
and the clean image predicted from a noise prediction (``step(...).pred_original_sample``)."""

from __future__ import annotations

import functools

import torch
from diffusers import DDPMScheduler

from . import Verdict, checked, right, wrong

TIMESTEPS = torch.tensor([0, 250, 600, 999])  # one per image of the check's batch
ZH_NAMES = {"linear": "线性", "cosine": "余弦"}
# x0 from a noise prediction divides by sqrt(alpha_bar_t): at t = 999 (alpha_bar ~ 2e-9) rounding alone is amplified
X0_TIMESTEPS = torch.tensor([10, 250, 600, 900])


@functools.cache
def schedules() -> dict[str, DDPMScheduler]:
    """The two schedules the checks try: diffusers' default linear one and the cosine one."""
    return {"linear": DDPMScheduler(num_train_timesteps=1000),
            "cosine": DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four clean images in [-1, 1] and their Gaussian noise, always the same."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)


def _coefficients(abar: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = abar[t].view(-1, 1, 1, 1)
    return a, 1 - a


def _call(function, *args) -> tuple[torch.Tensor | None, Verdict | None]:
    """The learner's result, or a verdict naming the usual broadcasting slip."""
    try:
        return function(*args), None
    except RuntimeError as error:
        if "must match the size" not in str(error):
            raise
        return None, wrong(f"shapes do not broadcast ({error}): alphas_cumprod[t] has one value per image; "
                           "reshape it with .view(-1, 1, 1, 1) so it multiplies each image's (C, H, W)",
                           f"形状无法广播（{error}）：alphas_cumprod[t] 每张图像一个值；"
                           "用 .view(-1, 1, 1, 1) 变形，才能乘到每张图像的 (C, H, W) 上")


def _shape(got, expected: torch.Tensor) -> Verdict | None:
    if not isinstance(got, torch.Tensor):
        return wrong(f"your function returned {type(got).__name__}, not a tensor",
                     f"你的函数返回了 {type(got).__name__}，而不是张量")
    if got.shape != expected.shape:
        return wrong(f"the result has shape {tuple(got.shape)}; expected {tuple(expected.shape)}, the shape of x0",
                     f"结果的形状是 {tuple(got.shape)}；应为 {tuple(expected.shape)}，即 x0 的形状")
    return None


def _beside(function, reference, x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor):
    """The learner's ``function(x0, noise, t, abar)``, the scheduler's ``reference(x0, noise, t)``, and a verdict
    when the two cannot be compared (a broadcasting error, a wrong shape)."""
    got, verdict = _call(function, x0, noise, TIMESTEPS, abar)
    expected = reference(x0, noise, TIMESTEPS)
    if verdict is None:  # (a Verdict is falsy unless right: test it against None)
        verdict = _shape(got, expected)
    return got, expected, verdict


@checked
def check_add_noise(add_noise) -> Verdict:
    """``add_noise(x0, noise, t, alphas_cumprod)`` equals ``DDPMScheduler.add_noise`` on the linear and cosine
    schedules at t = 0, 250, 600 and 999."""
    x0, noise = _batch()
    for name, scheduler in schedules().items():
        abar = scheduler.alphas_cumprod
        got, expected, verdict = _beside(add_noise, scheduler.add_noise, x0, noise, abar)
        if verdict is not None:
            return verdict
        if torch.allclose(got, expected, atol=1e-5):
            continue
        a, b = _coefficients(abar, TIMESTEPS)
        if torch.allclose(got, a * x0 + b * noise, atol=1e-5):
            return wrong("you mixed with ᾱ_t and 1 − ᾱ_t; the closed form takes their square roots: "
                         "√ᾱ_t·x0 + √(1 − ᾱ_t)·noise (1 − ᾱ_t is the variance, its root the standard deviation)",
                         "你用 ᾱ_t 和 1 − ᾱ_t 做了混合；闭式形式要取它们的平方根："
                         "√ᾱ_t·x0 + √(1 − ᾱ_t)·noise（1 − ᾱ_t 是方差，它的平方根才是标准差）")
        if torch.allclose(got, b.sqrt() * x0 + a.sqrt() * noise, atol=1e-5):
            return wrong("the two coefficients are swapped: x0 takes √ᾱ_t (near 1 at t = 0), the noise √(1 − ᾱ_t)",
                         "两个系数写反了：x0 乘 √ᾱ_t（t = 0 时接近 1），噪声乘 √(1 − ᾱ_t)")
        off = (got - expected).abs().amax(dim=(1, 2, 3))
        worst = int(off.argmax())
        return wrong(f"on the {name} schedule your x_t differs from DDPMScheduler.add_noise by up to "
                     f"{off[worst]:.3g} at t = {int(TIMESTEPS[worst])}",
                     f"在{ZH_NAMES[name]}调度下，你的 x_t 与 DDPMScheduler.add_noise "
                     f"在 t = {int(TIMESTEPS[worst])} 处最多相差 {off[worst]:.3g}")
    return right("your add_noise equals DDPMScheduler.add_noise on the linear and cosine schedules",
                 "你的 add_noise 在线性和余弦调度下都与 DDPMScheduler.add_noise 一致")


@checked
def check_velocity(velocity) -> Verdict:
    """``velocity(x0, noise, t, alphas_cumprod)`` equals ``DDPMScheduler.get_velocity`` on both schedules."""
    x0, noise = _batch(1)
    for scheduler in schedules().values():
        abar = scheduler.alphas_cumprod
        got, expected, verdict = _beside(velocity, scheduler.get_velocity, x0, noise, abar)
        if verdict is not None:
            return verdict
        if torch.allclose(got, expected, atol=1e-5):
            continue
        a, b = (c.sqrt() for c in _coefficients(abar, TIMESTEPS))
        if torch.allclose(got, -expected, atol=1e-5):
            return wrong("your velocity has the opposite sign: v = √ᾱ_t·noise − √(1 − ᾱ_t)·x0",
                         "你的速度符号相反：v = √ᾱ_t·noise − √(1 − ᾱ_t)·x0")
        if torch.allclose(got, noise - x0, atol=1e-5):
            return wrong("noise − x0 is flow matching's velocity (chapter 12), the derivative along a straight "
                         "line; DDPM's v weights the two: v = √ᾱ_t·noise − √(1 − ᾱ_t)·x0",
                         "noise − x0 是流匹配的速度（第 12 章），即沿直线的导数；"
                         "DDPM 的 v 对两者加权：v = √ᾱ_t·noise − √(1 − ᾱ_t)·x0")
        if torch.allclose(got, b * noise - a * x0, atol=1e-5):
            return wrong("the coefficients are swapped: the noise takes √ᾱ_t, x0 takes √(1 − ᾱ_t)",
                         "系数写反了：噪声乘 √ᾱ_t，x0 乘 √(1 − ᾱ_t)")
        off = float((got - expected).abs().max())
        return wrong(f"your velocity differs from DDPMScheduler.get_velocity by up to {off:.3g}",
                     f"你的速度与 DDPMScheduler.get_velocity 最多相差 {off:.3g}")
    return right("your velocity equals DDPMScheduler.get_velocity on the linear and cosine schedules",
                 "你的速度在线性和余弦调度下都与 DDPMScheduler.get_velocity 一致")


@checked
def check_halfway(t) -> Verdict:
    """``t`` is the first timestep at which the cosine schedule's ᾱ_t is below 0.5."""
    abar = schedules()["cosine"].alphas_cumprod
    below = (abar < 0.5).nonzero()
    answer = int(below[0])
    try:
        t = int(t)
    except (TypeError, ValueError):
        return wrong(f"give the timestep as a whole number, not {t!r}", f"请把时间步写成整数，而不是 {t!r}")
    if t == answer:
        return right(f"ᾱ_{t} = {abar[t]:.4f} is the first below 0.5 (ᾱ_{t - 1} = {abar[t - 1]:.4f}): half of the "
                     "signal's variance is gone near the middle of the cosine schedule (the linear one gets there at "
                     f"t = {int((schedules()['linear'].alphas_cumprod < 0.5).nonzero()[0])})",
                     f"ᾱ_{t} = {abar[t]:.4f} 是第一个低于 0.5 的值（ᾱ_{t - 1} = {abar[t - 1]:.4f}）：余弦调度在中间附近"
                     "失去一半的信号方差（线性调度在 t = "
                     f"{int((schedules()['linear'].alphas_cumprod < 0.5).nonzero()[0])} 就到了）")
    if not 0 <= t < len(abar):
        return wrong(f"t = {t} is not a timestep: they run from 0 to {len(abar) - 1}",
                     f"t = {t} 不是时间步：时间步从 0 到 {len(abar) - 1}")
    if t == int((abar.sqrt() < 0.5).nonzero()[0]):
        return wrong(f"at t = {t} it is √ᾱ_t that falls below 0.5 (ᾱ_t below 0.25); the question asks about ᾱ_t",
                     f"t = {t} 是 √ᾱ_t 低于 0.5 的地方（ᾱ_t 低于 0.25）；题目问的是 ᾱ_t")
    linear = schedules()["linear"].alphas_cumprod
    if t == int((linear < 0.5).nonzero()[0]):
        return wrong(f"t = {t} is where the default linear schedule's ᾱ_t falls below 0.5; use "
                     'DDPMScheduler(beta_schedule="squaredcos_cap_v2")',
                     f"t = {t} 是默认线性调度的 ᾱ_t 低于 0.5 的地方；请用 "
                     'DDPMScheduler(beta_schedule="squaredcos_cap_v2")')
    side = "still at or above" if abar[t] >= 0.5 else "already below"
    side_zh = "仍不低于" if abar[t] >= 0.5 else "早已低于"
    return wrong(f"ᾱ_{t} = {abar[t]:.4f}, {side} 0.5: look for the first t whose ᾱ_t < 0.5",
                 f"ᾱ_{t} = {abar[t]:.4f}，{side_zh} 0.5：请找第一个 ᾱ_t < 0.5 的 t")


@checked
def check_x0_from_eps(x0_from_eps) -> Verdict:
    """``x0_from_eps(x_t, eps, t, alphas_cumprod)`` equals the ``pred_original_sample`` of
    ``DDPMScheduler.step`` (cosine schedule, no clipping) for a noise prediction ``eps``."""
    scheduler = schedules()["cosine"]
    abar = scheduler.alphas_cumprod
    x0, noise = _batch(2)
    x_t = scheduler.add_noise(x0, noise, X0_TIMESTEPS)
    eps = noise + 0.1 * _batch(3)[1]  # a noise prediction that is a little off, as a model's is
    got, verdict = _call(x0_from_eps, x_t, eps, X0_TIMESTEPS, abar)
    if verdict is not None:
        return verdict
    expected = torch.cat([scheduler.step(eps[i:i + 1], int(t), x_t[i:i + 1]).pred_original_sample
                          for i, t in enumerate(X0_TIMESTEPS)])
    if (verdict := _shape(got, expected)) is not None:
        return verdict
    if torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
        return right("your x̂0 equals DDPMScheduler.step(...).pred_original_sample: x̂0 = (x_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t",
                     "你的 x̂0 与 DDPMScheduler.step(...).pred_original_sample 一致：x̂0 = (x_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t")
    a, b = _coefficients(abar, X0_TIMESTEPS)
    if torch.allclose(got, x_t - b.sqrt() * eps, rtol=1e-4, atol=1e-4):
        return wrong("you removed the noise but did not divide by √ᾱ_t: x_t holds √ᾱ_t·x0, not x0",
                     "你去掉了噪声，但没有除以 √ᾱ_t：x_t 里是 √ᾱ_t·x0，而不是 x0")
    if torch.allclose(got, (x_t - b * eps) / a, rtol=1e-4, atol=1e-4):
        return wrong("take square roots: x̂0 = (x_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t",
                     "要取平方根：x̂0 = (x_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t")
    off = (got - expected).abs().amax(dim=(1, 2, 3))
    worst = int(off.argmax())
    return wrong(f"your x̂0 differs from the scheduler's by up to {off[worst]:.3g} at t = {int(X0_TIMESTEPS[worst])}",
                 f"你的 x̂0 与调度器的结果在 t = {int(X0_TIMESTEPS[worst])} 处最多相差 {off[worst]:.3g}")
