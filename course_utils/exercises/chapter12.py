"""Chapter 12's exercises: SD3's timestep shift, the clean image and the noise read off a velocity, a Heun step.

Each check compares the learner's code with diffusers: ``FlowMatchEulerDiscreteScheduler(shift=...)``, its
forward process ``scale_noise``, and ``FlowMatchHeunDiscreteScheduler``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import Verdict, checked, right, wrong, wrong_shape


def _fixed(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@checked
def check_shift(shift_sigmas: Callable) -> Verdict:
    """Exercise 1: ``shift_sigmas(sigmas, shift)`` gives the noise levels ``FlowMatchEulerDiscreteScheduler(shift=
    shift)`` samples at when handed ``sigmas`` (evenly spaced, as the SD3 pipeline passes them)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from ..diffusion import flow_sigmas

    for shift in (3.0, 1.5, 1.0):
        for steps in (10, 28):
            scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
            scheduler.set_timesteps(sigmas=flow_sigmas(steps))
            want = scheduler.sigmas[:-1]  # the scheduler appends the final 0
            got = shift_sigmas(torch.tensor(flow_sigmas(steps)), shift)
            if (off := wrong_shape(got, want, f"for {steps} steps it", f"{steps} 步时它")) is not None:
                return off
            if not torch.allclose(got.float(), want, atol=1e-5):
                i = int((got.float() - want).abs().argmax())
                return wrong(f"with shift {shift}, {steps} steps: step {i} has σ = {float(got[i]):.4f}, the "
                             f"scheduler's is {float(want[i]):.4f}; the shift maps σ to shift·σ / (1 + (shift − 1)·σ)",
                             f"shift 为 {shift}、{steps} 步时：第 {i} 步的 σ = {float(got[i]):.4f}，调度器的是 "
                             f"{float(want[i]):.4f}；偏移把 σ 映射为 shift·σ / (1 + (shift − 1)·σ)")
    return right("your shift gives the scheduler's noise levels for shift 3, 1.5 and 1 (no change), 10 and 28 steps",
                 "你的偏移在 shift 为 3、1.5 和 1（不变）、10 步和 28 步时都给出与调度器相同的噪声水平")


@checked
def check_x0_and_noise(x0_and_noise: Callable) -> Verdict:
    """Exercise 2: ``x0_and_noise(x_t, v, t)`` -> (x0, noise): the two ends of the straight line through x_t whose
    velocity is v, with x_t made by diffusers' ``scale_noise`` at noise levels t."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    x0, eps = _fixed(0, 4, 1, 8, 8), _fixed(1, 4, 1, 8, 8)
    t = torch.tensor([0.05, 0.3, 0.7, 0.95])
    x_t = FlowMatchEulerDiscreteScheduler().scale_noise(x0, t * 1000, eps)
    out = x0_and_noise(x_t.clone(), (eps - x0).clone(), t.clone())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return wrong("x0_and_noise should return two tensors, (x0, noise)",
                     "x0_and_noise 应返回两个张量 (x0, noise)")
    for got, want, en, zh in ((out[0], x0, "x0", "x0"), (out[1], eps, "the noise", "噪声")):
        if (off := wrong_shape(got, want, en, zh)) is not None:
            return off
        if not torch.allclose(got, want, atol=1e-4):
            per_t = (got - want).flatten(1).abs().amax(1)
            worst = float(t[int(per_t.argmax())])
            return wrong(f"{en} is off by {float(per_t.max()):.3g} at t = {worst}: x_t = (1 − t)·x0 + t·noise and "
                         "v = noise − x0, so x0 = x_t − t·v and noise = x_t + (1 − t)·v (t has one value per image: "
                         "shape it (N, 1, 1, 1))",
                         f"{zh}在 t = {worst} 处相差 {float(per_t.max()):.3g}：x_t = (1 − t)·x0 + t·noise，"
                         "v = noise − x0，所以 x0 = x_t − t·v，noise = x_t + (1 − t)·v（每张图一个 t：把它变形为 "
                         "(N, 1, 1, 1)）")
    return right("x0 and the noise come back exactly at t = 0.05, 0.3, 0.7 and 0.95: one velocity and the point "
                 "fix the whole line", "在 t = 0.05、0.3、0.7、0.95 处都准确还原了 x0 和噪声：一个速度加上一个点，"
                 "就确定了整条直线")


def _velocity(x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """A curved velocity field (not a trained network), so that Heun and Euler differ."""
    return torch.sin(3 * x) + float(t) * x


@checked
def check_heun_step(heun_step: Callable) -> Verdict:
    """Exercise 3: ``heun_step(velocity, x, t, t_next)`` is Heun's step of dx/dt = velocity(x, t); three of them
    and a last Euler step give ``FlowMatchHeunDiscreteScheduler``'s 4-step sample."""
    from diffusers import FlowMatchHeunDiscreteScheduler

    x = _fixed(2, 16)
    v1 = _velocity(x, 0.6)
    euler_end = x + (0.2 - 0.6) * v1
    want = x + (0.2 - 0.6) * (v1 + _velocity(euler_end, 0.2)) / 2
    got = heun_step(_velocity, x.clone(), 0.6, 0.2)
    if (off := wrong_shape(got, want, "heun_step", "heun_step ")) is not None:
        return off
    if torch.allclose(got, euler_end, atol=1e-5):
        return wrong("from t = 0.6 to 0.2 your step is Euler's: take the Euler step, read the velocity at its end, "
                     "then step again from x with the average of the two velocities",
                     "从 t = 0.6 到 0.2，你的这一步就是欧拉步：先走一个欧拉步，读出终点处的速度，再从 x 出发，"
                     "用两个速度的平均值重新走一步")
    if not torch.allclose(got, want, atol=1e-5):
        return wrong(f"from t = 0.6 to 0.2 your step is off by {float((got - want).abs().max()):.3g} from Heun's: "
                     "x + (t_next − t)·(v(x, t) + v(x_euler, t_next)) / 2",
                     f"从 t = 0.6 到 0.2，你的这一步与 Heun 方法相差 {float((got - want).abs().max()):.3g}："
                     "x + (t_next − t)·(v(x, t) + v(x_euler, t_next)) / 2")
    scheduler = FlowMatchHeunDiscreteScheduler()
    scheduler.set_timesteps(4)
    theirs = x.clone()
    for t in scheduler.timesteps:
        theirs = scheduler.step(_velocity(theirs, t / 1000), t, theirs).prev_sample
    levels = scheduler.sigmas.unique_consecutive().tolist()  # 1, ..., 0.001, 0: each level once
    mine = x.clone()
    for t, t_next in zip(levels[:-2], levels[1:-1], strict=True):
        mine = heun_step(_velocity, mine, t, t_next)
    mine = mine + (0 - levels[-2]) * _velocity(mine, levels[-2])  # diffusers' last step (to 0) is Euler's
    if not torch.allclose(mine, theirs, atol=1e-4):
        return wrong(f"your step is Heun's, but three of them off FlowMatchHeunDiscreteScheduler's 4-step sample by "
                     f"{float((mine - theirs).abs().max()):.3g}: does heun_step use t and t_next as given?",
                     f"你的一步是 Heun 步，但连走三步后与 FlowMatchHeunDiscreteScheduler 的 4 步结果相差 "
                     f"{float((mine - theirs).abs().max()):.3g}：heun_step 是否按给定的 t 和 t_next 计算？")
    return right("your step is Heun's, and with a last Euler step it gives FlowMatchHeunDiscreteScheduler's "
                 "sample: two velocity reads per step, second-order accurate",
                 "你的一步就是 Heun 步，最后再接一个欧拉步，就得到 FlowMatchHeunDiscreteScheduler 的结果："
                 "每步读两次速度，二阶精度")
