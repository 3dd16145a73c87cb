"""Chapter 2's exercises, each checked against the diffusers ``DDPMScheduler`` that does the same: the cosine
schedule's betas from their formula, a schedule rescaled to reach pure noise (zero terminal SNR), where the cosine
schedule's ᾱ_t falls below 0.5, and the DDPM reverse step with the other variance, β_t."""

from __future__ import annotations

import functools
import math

import torch
from diffusers import DDPMScheduler

from . import Verdict, checked, right, wrong

T = 1000
# the reverse step's checks: early, middle, late, the one before the last and the last (which adds no noise); not
# t = 999, where x̂₀ divides by √ᾱ_t ~ 1e-4 and rounding alone is amplified
STEP_TIMESTEPS = (900, 500, 100, 1, 0)
# the zero-SNR checks: the default linear schedule and Stable Diffusion's scaled_linear one
ZERO_SNR_SCHEDULES = {"linear (1e-4 to 0.02)": dict(),
                      "scaled_linear (0.00085 to 0.012)": dict(beta_schedule="scaled_linear", beta_start=0.00085,
                                                               beta_end=0.012)}


@functools.cache
def schedules() -> dict[str, DDPMScheduler]:
    """The two schedules the checks try: diffusers' default linear one and the cosine one."""
    return {"linear": DDPMScheduler(num_train_timesteps=T),
            "cosine": DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=False)}


def _tensor_like(got, expected: torch.Tensor, what: str, what_zh: str) -> Verdict | None:
    """A "wrong" verdict when ``got`` is not a tensor of ``expected``'s shape, else None."""
    if not isinstance(got, torch.Tensor):
        return wrong(f"{what} is a {type(got).__name__}, not a tensor", f"{what_zh}是 {type(got).__name__}，不是张量")
    if tuple(got.shape) != tuple(expected.shape):
        return wrong(f"{what} has shape {tuple(got.shape)}; expected {tuple(expected.shape)}",
                     f"{what_zh}的形状是 {tuple(got.shape)}；应为 {tuple(expected.shape)}")
    return None


def _cosine_abar(s: float, offset: float = 0.008) -> float:
    return math.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2


@checked
def check_cosine_betas(cosine_betas) -> Verdict:
    """``cosine_betas(T)`` equals ``DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas`` for T = 1000 and 50."""
    for n in (T, 50):
        expected = DDPMScheduler(num_train_timesteps=n, beta_schedule="squaredcos_cap_v2").betas
        got = cosine_betas(n)
        if (verdict := _tensor_like(got, expected, f"cosine_betas({n})", f"cosine_betas({n}) 的结果")) is not None:
            return verdict
        got = got.double()
        if torch.allclose(got, expected.double(), atol=1e-6):
            continue
        abar = torch.tensor([_cosine_abar(i / n) for i in range(1, n + 1)], dtype=torch.float64)
        if torch.allclose(got, abar, atol=1e-4):
            return wrong("those are the ᾱ values; a schedule is its betas: β_t = 1 − ᾱ(t+1)/ᾱ(t)",
                         "这些是 ᾱ 的值；调度由 β 给出：β_t = 1 − ᾱ(t+1)/ᾱ(t)")
        if torch.allclose(got[:-1], expected[:-1].double(), atol=1e-6):
            return wrong(f"all but the last beta agree; the last one is {float(got[-1]):.4g}: cap each beta at 0.999 "
                         "(ᾱ reaches 0 at the end, and a beta of 1 would leave nothing to divide by)",
                         f"除最后一个外都对；最后一个 β 是 {float(got[-1]):.4g}：每个 β 都要截断到 0.999"
                         "（ᾱ 在末尾降到 0，β 为 1 会让后面没有可除的数）")
        no_offset = torch.tensor([min(1 - _cosine_abar((i + 1) / n, 0) / _cosine_abar(i / n, 0), 0.999)
                                  for i in range(n)], dtype=torch.float64)
        if torch.allclose(got, no_offset, atol=1e-6):
            return wrong("without the offset s = 0.008 the first betas are almost 0: ᾱ(s) = cos²((s + 0.008) / 1.008 "
                         "· π/2)", "没有偏移 s = 0.008，最前面的 β 几乎为 0：ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2)")
        off = (got - expected.double()).abs()
        worst = int(off.argmax())
        return wrong(f"with T = {n}, beta {worst} is {float(got[worst]):.6g}; DDPMScheduler has "
                     f"{float(expected[worst]):.6g}", f"T = {n} 时，第 {worst} 个 β 是 {float(got[worst]):.6g}；"
                     f"DDPMScheduler 的是 {float(expected[worst]):.6g}")
    betas = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2").betas
    return right(f"your betas equal DDPMScheduler's squaredcos_cap_v2 for T = 1000 and T = 50; they grow from "
                 f"{float(betas[0]):.1e} to the cap, 0.999",
                 f"你的 β 在 T = 1000 和 T = 50 时都与 DDPMScheduler 的 squaredcos_cap_v2 一致；它们从 "
                 f"{float(betas[0]):.1e} 增长到上限 0.999")


@checked
def check_zero_terminal_snr(zero_terminal_snr) -> Verdict:
    """``zero_terminal_snr(betas)`` equals the betas of ``DDPMScheduler(rescale_betas_zero_snr=True)`` on the linear
    and the scaled_linear schedule."""
    for name, settings in ZERO_SNR_SCHEDULES.items():
        betas = DDPMScheduler(num_train_timesteps=T, **settings).betas
        expected = DDPMScheduler(num_train_timesteps=T, rescale_betas_zero_snr=True, **settings).betas
        got = zero_terminal_snr(betas.clone())
        if (verdict := _tensor_like(got, expected, "the result", "结果")) is not None:
            return verdict
        if torch.allclose(got.float(), expected, atol=1e-6):
            continue
        abar = torch.cumprod(1 - got.double(), dim=0)
        old = torch.cumprod(1 - betas.double(), dim=0)
        if abar[-1].abs() > 1e-6:
            return wrong(f"on the {name} schedule your ᾱ at t = {T - 1} is {float(abar[-1]):.3g}, not 0: shift "
                         "√ᾱ_t down by its last value", f"在 {name} 调度下，你的 ᾱ 在 t = {T - 1} 处是 "
                         f"{float(abar[-1]):.3g}，不是 0：把 √ᾱ_t 整体减去它的最后一个值")
        if not torch.isclose(abar[0], old[0], atol=1e-7):
            return wrong(f"on the {name} schedule ᾱ at t = 0 moved from {float(old[0]):.6f} to {float(abar[0]):.6f}: "
                         "after the shift, scale √ᾱ_t so that its first value is back where it was",
                         f"在 {name} 调度下，t = 0 处的 ᾱ 从 {float(old[0]):.6f} 变成了 {float(abar[0]):.6f}："
                         "平移之后，还要缩放 √ᾱ_t，让它的第一个值回到原处")
        off = float((got.double() - expected.double()).abs().max())
        return wrong(f"on the {name} schedule your betas differ from DDPMScheduler(rescale_betas_zero_snr=True)'s by "
                     f"up to {off:.3g}: shift and scale √ᾱ_t (not ᾱ_t), then α_t = ᾱ_t / ᾱ_(t−1), α_0 = ᾱ_0",
                     f"在 {name} 调度下，你的 β 与 DDPMScheduler(rescale_betas_zero_snr=True) 的最多相差 {off:.3g}："
                     "平移和缩放的是 √ᾱ_t（不是 ᾱ_t），然后 α_t = ᾱ_t / ᾱ_(t−1)，α_0 = ᾱ_0")
    before = float(schedules()["linear"].alphas_cumprod[-1].sqrt())
    return right(f"your schedules reach pure noise: √ᾱ at t = {T - 1} is 0 (the linear schedule left {before:.4f}). "
                 "Training now shows the model what sampling starts from; an ε model cannot use it, since x̂₀ divides "
                 "by √ᾱ_t = 0 there: such schedules go with v prediction",
                 f"你的调度到达了纯噪声：t = {T - 1} 处 √ᾱ 为 0（线性调度还剩 {before:.4f}）。训练从此见到采样的起点；"
                 "但 ε 模型用不了它，因为 x̂₀ 在那里要除以 √ᾱ_t = 0：这样的调度要配 v 预测")


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


def _step_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy batch and a noise prediction for it, always the same."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)


def _scheduler_step(scheduler: DDPMScheduler, eps: torch.Tensor, t: int, x_t: torch.Tensor, seed: int) -> torch.Tensor:
    return scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(seed)).prev_sample


@checked
def check_ddpm_step_large(ddpm_step_large) -> Verdict:
    """``ddpm_step_large(eps, x_t, t, alphas_cumprod, noise)`` (1000 steps, no clipping) equals
    ``DDPMScheduler(variance_type="fixed_large").step`` on the same noise."""
    large = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                          variance_type="fixed_large")
    small = schedules()["cosine"]  # the chapter's variance, beta tilde
    x_t, eps = _step_inputs()
    for seed, t in enumerate(STEP_TIMESTEPS):
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(seed))
        expected = _scheduler_step(large, eps, t, x_t, seed)
        got = ddpm_step_large(eps.clone(), x_t.clone(), t, large.alphas_cumprod.clone(), noise.clone())
        if (verdict := _tensor_like(got, expected, f"at t = {t} the result", f"t = {t} 时的结果")) is not None:
            return verdict
        if torch.allclose(got, expected, atol=1e-4):
            continue
        if torch.allclose(got, _scheduler_step(small, eps, t, x_t, seed), atol=1e-4):
            return wrong(f"at t = {t} your step adds the chapter's noise, √β̃_t·z; this one adds √β_t·z, "
                         "β_t = 1 − ᾱ_t / ᾱ_(t−1)", f"t = {t} 时你的一步加的是本章的噪声 √β̃_t·z；这里要加 √β_t·z，"
                         "β_t = 1 − ᾱ_t / ᾱ_(t−1)")
        if t == 0 and torch.allclose(got, _scheduler_step(large, eps, 0, x_t, seed) + large.betas[0].sqrt() * noise,
                                     atol=1e-4):
            return wrong("at t = 0 your step adds noise; the last step returns the mean alone",
                         "t = 0 时你的一步加了噪声；最后一步只返回均值")
        other = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(seed + 100))
        moved = ddpm_step_large(eps.clone(), x_t.clone(), t, large.alphas_cumprod.clone(), other) - got
        if t > 0 and torch.allclose(moved, large.betas[t].sqrt() * (other - noise), atol=1e-4):
            return wrong(f"at t = {t} the noise term is right but the mean is off by up to "
                         f"{float((got - expected).abs().max()):.3g}: x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, then "
                         "μ = (√ᾱ_(t−1)·β_t·x̂₀ + √α_t·(1−ᾱ_(t−1))·x_t) / (1−ᾱ_t)",
                         f"t = {t} 时噪声项对了，但均值最多差 {float((got - expected).abs().max()):.3g}："
                         "x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t，然后 μ = (√ᾱ_(t−1)·β_t·x̂₀ + √α_t·(1−ᾱ_(t−1))·x_t) / (1−ᾱ_t)")
        return wrong(f"at t = {t} your x_(t−1) differs from DDPMScheduler(variance_type=\"fixed_large\").step by up "
                     f"to {float((got - expected).abs().max()):.3g}",
                     f"t = {t} 时你的 x_(t−1) 与 DDPMScheduler(variance_type=\"fixed_large\").step 最多相差 "
                     f"{float((got - expected).abs().max()):.3g}")
    abar = large.alphas_cumprod
    ratio = {t: float((1 - abar[t]) / (1 - abar[t - 1])) for t in (1, 100)}  # beta_t / beta tilde_t
    return right(f"your step equals DDPMScheduler(variance_type=\"fixed_large\").step at t = "
                 f"{', '.join(map(str, STEP_TIMESTEPS))}. β_t is never below β̃_t: {ratio[1]:.1f}× at t = 1, "
                 f"{ratio[100]:.3f}× at t = 100. They differ noticeably only in the last few steps",
                 f"你的一步在 t = {', '.join(map(str, STEP_TIMESTEPS))} 处都与 "
                 f"DDPMScheduler(variance_type=\"fixed_large\").step 一致。β_t 从不小于 β̃_t：t = 1 时是它的 "
                 f"{ratio[1]:.1f} 倍，t = 100 时是 {ratio[100]:.3f} 倍。两者只在最后几步差得明显")
