"""Chapter 9's exercises: one inversion step, partial inversion's round trip, inversion with DDIMInverseScheduler."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import Verdict, checked, right, wrong, wrong_shape


def _inverse_scheduler(steps: int):
    """diffusers' DDIMInverseScheduler on the shipped model's schedule (Stable Diffusion 1.x's, offset 1)."""
    from diffusers import DDIMInverseScheduler

    from ..tiny_sd import SCHEDULE

    inverse = DDIMInverseScheduler(**SCHEDULE, steps_offset=1)
    inverse.set_timesteps(steps)
    return inverse


@checked
def check_invert_step(invert_step: Callable) -> Verdict:
    """Exercise 1: ``invert_step(x, eps, t, t_next, alphas_cumprod)`` is DDIMInverseScheduler.step, t up to t_next."""
    inverse = _inverse_scheduler(50)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for t in (1, 401, 961):
        t_next = t + 20
        want = inverse.step(eps, t_next, x).prev_sample  # diffusers' step lands on t_next, from t_next - 20
        got = invert_step(x.clone(), eps.clone(), t, t_next, inverse.alphas_cumprod.clone())
        if (off := wrong_shape(got, want, f"from t = {t} it", f"从 t = {t} 出发")) is not None:
            return off
        if not torch.allclose(got, want, atol=1e-5):
            return wrong(f"from t = {t} to {t_next} it is off by {(got - want).abs().max():.3g} from "
                         "DDIMInverseScheduler.step: read off x̂0 with ᾱ at t, then re-noise it with ᾱ at t_next",
                         f"从 t = {t} 到 {t_next}，与 DDIMInverseScheduler.step 相差 {(got - want).abs().max():.3g}："
                         "先用 t 处的 ᾱ 求出 x̂0，再用 t_next 处的 ᾱ 重新加噪")
    return right("equal to DDIMInverseScheduler.step from t = 1, 401 and 961 one step up",
                 "从 t = 1、401、961 向上一步，都与 DDIMInverseScheduler.step 相等")


def _walk(predict: Callable, x: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """DDIM steps (the course's ddim_step) from each timestep to the next in ``timesteps``."""
    from ..sampling import ddim_step

    scheduler = _inverse_scheduler(1)  # only its alphas_cumprod and config are read
    for t, t_next in zip(timesteps[:-1], timesteps[1:], strict=True):
        x = ddim_step(scheduler, predict(x, t), t, t_next, x)[0]
    return x


def partial_round_trip_error(predict: Callable, latents: torch.Tensor, steps: int, start_step: int) -> float:
    """Latent MSE after inverting ``start_step`` steps short of the top and regenerating from there (same predict)."""
    down = _inverse_scheduler(steps).timesteps.flip(0).tolist()[start_step:]  # 981, 961, ... without the first few
    with torch.no_grad():
        back = _walk(predict, _walk(predict, latents, down[::-1]), down)
    return (back - latents).pow(2).mean().item()


@checked
def check_round_trip_errors(errors: dict, predict: Callable, latents: torch.Tensor, steps: int = 10) -> Verdict:
    """Exercise 2: ``errors[start_step]`` is the partial round trip's latent MSE, for start_step 0 .. steps - 1."""
    missing = [k for k in range(steps) if k not in errors]
    if missing:
        return wrong(f"errors has no value for start_step {missing}: compute one for each of 0 .. {steps - 1}",
                     f"errors 缺少 start_step {missing} 的数值：请为 0 .. {steps - 1} 每个都算一个")
    if errors[steps - 1] > 1e-8:
        return wrong(f"at start_step {steps - 1} the walk takes no step, so the error must be 0, not "
                     f"{errors[steps - 1]:.3g}: is your path of timesteps cut at the right end?",
                     f"start_step 为 {steps - 1} 时一步都不走，误差应为 0，而不是 {errors[steps - 1]:.3g}："
                     "时间步的路径是否从正确的一端截断？")
    for k in (0, steps // 2):
        want = partial_round_trip_error(predict, latents, steps, k)
        if abs(errors[k] - want) > 1e-3 * max(want, 1e-3):
            return wrong(f"at start_step {k} the round trip's latent MSE is {want:.4g}, yours is {errors[k]:.4g}",
                         f"start_step 为 {k} 时往返的潜变量均方误差是 {want:.4g}，你的是 {errors[k]:.4g}")
    return right(f"on the whole, the round-trip error falls from {errors[0]:.4g} (all the way up) to 0 (no step) as "
                 "start_step grows, though not at every step: the fewer steps inverted, the less the walk drifts — "
                 "and the less an edit can change",
                 f"总体上，随着 start_step 增大，往返误差从 {errors[0]:.4g}（一直反演到顶）降到 0（不走一步），"
                 "但并非每一步都下降：反演的步数越少，偏移越小——编辑能改变的也越少")


@checked
def check_invert_with_diffusers(invert_with_diffusers: Callable, predict: Callable, latents: torch.Tensor,
                                steps: int = 10) -> Verdict:
    """Exercise 3: a loop over DDIMInverseScheduler that gives the course's ``ddim_invert`` (1 -> 981 for 50 steps)."""
    from ..sampling import ddim_invert

    with torch.no_grad():
        want = ddim_invert(predict, _inverse_scheduler(steps), latents, steps)
        got = invert_with_diffusers(predict, latents, steps)
    if (off := wrong_shape(got, want, "it", "")) is not None:
        return off
    if not torch.allclose(got, want, atol=1e-4):
        return wrong(f"off by {(got - want).abs().max():.3g} from ddim_invert: DDIMInverseScheduler.step(eps, t, x) "
                     "steps from t - 1000 // steps up to t, so predict the noise at t - 1000 // steps (where x is), "
                     "and start from the second timestep (the latents stand in for x at the first)",
                     f"与 ddim_invert 相差 {(got - want).abs().max():.3g}：DDIMInverseScheduler.step(eps, t, x) 是从 "
                     "t - 1000 // steps 走到 t，所以要在 t - 1000 // steps（x 所在处）预测噪声，并从第二个时间步开始"
                     "（潜变量代表第一个时间步处的 x）")
    return right("your DDIMInverseScheduler loop gives ddim_invert's x_T: diffusers' step lands on t, from the "
                 "timestep below it", "你用 DDIMInverseScheduler 写的循环得到与 ddim_invert 相同的 x_T："
                 "diffusers 的 step 是从下一个较低的时间步走到 t")
