"""Chapter 14's exercises: LCM's boundary scalings, the target network's EMA update, LCM's sampling timesteps.

Each check compares the learner's code with diffusers' ``LCMScheduler`` (its ``get_scalings_for_boundary_condition_
discrete`` and ``set_timesteps``) or, for the EMA update, with the formula on two small ``torch.nn`` models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import Verdict, checked, right, two_values_each, wrong, wrong_shape

TIMESTEPS = (0, 1, 5, 19, 100, 999)  # the boundary, its first steps, the 50-step grid's first point, the noisy end


def _formula(t: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    scaled = scaling * t.double()
    return 0.25 / (scaled**2 + 0.25), scaled / (scaled**2 + 0.25) ** 0.5


@checked
def check_lcm_scalings(lcm_scalings: Callable) -> Verdict:
    """Exercise 1: ``lcm_scalings(t)`` -> (c_skip, c_out), one value per integer timestep in ``t``, equal to
    ``LCMScheduler().get_scalings_for_boundary_condition_discrete`` at t = 0, 1, 5, 19, 100 and 999."""
    from diffusers import LCMScheduler

    t = torch.tensor(TIMESTEPS)
    pair, off = two_values_each(lcm_scalings(t.clone()), t, "lcm_scalings", ("c_skip", "c_out"))
    if off is not None:
        return off
    c_skip, c_out = pair
    if not (abs(float(c_skip[0]) - 1) < 1e-6 and abs(float(c_out[0])) < 1e-6):
        swapped = abs(float(c_skip[0])) < 1e-6 and abs(float(c_out[0]) - 1) < 1e-6
        return wrong(f"at t = 0 you give c_skip = {float(c_skip[0]):.4g} and c_out = {float(c_out[0]):.4g}: the "
                     "boundary condition f(x, 0) = x needs c_skip(0) = 1 and c_out(0) = 0"
                     + (" (are c_skip and c_out swapped?)" if swapped else ""),
                     f"在 t = 0 处你给出 c_skip = {float(c_skip[0]):.4g}、c_out = {float(c_out[0]):.4g}："
                     "边界条件 f(x, 0) = x 要求 c_skip(0) = 1、c_out(0) = 0"
                     + ("（c_skip 和 c_out 是不是写反了？）" if swapped else ""))
    scheduler = LCMScheduler()
    want = torch.tensor([[float(c) for c in scheduler.get_scalings_for_boundary_condition_discrete(torch.tensor(s))]
                         for s in TIMESTEPS], dtype=torch.float64)
    got = torch.stack([c_skip, c_out], dim=1)
    if not torch.allclose(got, want, atol=1e-5):
        i = int((got - want).abs().amax(1).argmax())
        unscaled = torch.stack(_formula(t, 1.0), dim=1)
        hint_en, hint_zh = (("you use t itself: LCMScheduler multiplies the timestep by 10 first (timestep_scaling), "
                             "so c_out is close to 1 from the first step on",
                             "你直接用了 t：LCMScheduler 先把时间步乘以 10（timestep_scaling），"
                             "所以从第一步起 c_out 就接近 1")
                            if torch.allclose(got, unscaled, atol=1e-5) else
                            ("c_skip = σ²/((10t)² + σ²) and c_out = 10t/√((10t)² + σ²), σ = 0.5",
                             "c_skip = σ²/((10t)² + σ²)，c_out = 10t/√((10t)² + σ²)，σ = 0.5"))
        return wrong(f"at t = {TIMESTEPS[i]} you give c_skip = {float(got[i, 0]):.4f}, c_out = {float(got[i, 1]):.4f}; "
                     f"the scheduler's are {float(want[i, 0]):.4f} and {float(want[i, 1]):.4f}: {hint_en}",
                     f"在 t = {TIMESTEPS[i]} 处你给出 c_skip = {float(got[i, 0]):.4f}、c_out = {float(got[i, 1]):.4f}；"
                     f"调度器的是 {float(want[i, 0]):.4f} 和 {float(want[i, 1]):.4f}：{hint_zh}")
    return right("c_skip and c_out equal LCMScheduler's at t = 0, 1, 5, 19, 100 and 999: f(x, 0) = x, and from "
                 "t = 5 on f is almost all the network's clean estimate",
                 "c_skip 和 c_out 在 t = 0、1、5、19、100、999 处都与 LCMScheduler 的一致：f(x, 0) = x，"
                 "而从 t = 5 起 f 几乎完全是网络给出的干净图像估计")


def _two_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A target (no gradients, as in the chapter's loop) and a student with gradients from one backward pass."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    target, student = models
    target.requires_grad_(False)
    student(torch.ones(5, 3)).square().sum().backward()
    return target, student


def _snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _close(params, values) -> bool:
    return all(torch.allclose(p.detach(), v, atol=1e-6) for p, v in zip(params, values, strict=True))


@checked
def check_update_target(update_target: Callable) -> Verdict:
    """Exercise 2: ``update_target(target, student, decay)`` moves every parameter of ``target`` in place to
    decay·target + (1 − decay)·student; the student, its gradients and the target's autograd state stay as they
    were."""
    for decay in (0.9, 0.99):
        target, student = _two_models()
        before_t, before_s = _snapshot(target), _snapshot(student)
        grads = [p.grad.clone() for p in student.parameters()]
        returned = update_target(target, student, decay)
        if not _close(student.parameters(), before_s):
            return wrong("the student's parameters changed: only the target moves (towards the student)",
                         "学生的参数变了：只有目标网络移动（朝学生移动）")
        if not all(p.grad is not None and torch.equal(p.grad, g)
                   for p, g in zip(student.parameters(), grads, strict=True)):
            return wrong("the student's gradients changed: the update must not touch them",
                         "学生的梯度变了：这次更新不应碰它们")
        if _close(target.parameters(), before_t):
            new_en, new_zh = (("you return a new model, but the training loop keeps using the one it passed in: ",
                               "你返回了一个新模型，但训练循环继续用的是传进来的那个：")
                              if isinstance(returned, torch.nn.Module) else ("", ""))
            return wrong(new_en + "the target's parameters did not change; update them in place "
                         "(p.mul_(...).add_(...), p.lerp_(...) or p.copy_(...))",
                         new_zh + "目标网络的参数没有变；请原地更新它们"
                         "（p.mul_(...).add_(...)、p.lerp_(...) 或 p.copy_(...)）")
        if any(p.grad_fn is not None or p.requires_grad for p in target.parameters()):
            return wrong("the target's parameters now carry an autograd graph (or require gradients): do the update "
                         "under torch.no_grad(), so the target stays a constant for the loss",
                         "目标网络的参数现在带着自动求导的计算图（或需要梯度）：请在 torch.no_grad() 下更新，"
                         "让目标网络在损失里保持为常数")
        want = [decay * t + (1 - decay) * s for t, s in zip(before_t, before_s, strict=True)]
        if not _close(target.parameters(), want):
            flipped = [(1 - decay) * t + decay * s for t, s in zip(before_t, before_s, strict=True)]
            if _close(target.parameters(), flipped):
                return wrong(f"with decay {decay} the target jumped almost onto the student: decay weighs the target, "
                             f"target ← decay·target + (1 − decay)·student, so it moves only {1 - decay:.2g} of the "
                             "way",
                             f"decay 为 {decay} 时，目标网络几乎跳到了学生身上：decay 是目标网络自己的权重，"
                             f"target ← decay·target + (1 − decay)·student，每次只移动 {1 - decay:.2g} 的距离")
            off = max(float((p.detach() - w).abs().max()) for p, w in zip(target.parameters(), want, strict=True))
            return wrong(f"with decay {decay} the target is off by {off:.3g} from decay·target + (1 − decay)·student",
                         f"decay 为 {decay} 时，目标网络与 decay·target + (1 − decay)·student 相差 {off:.3g}")
    return right("the target moves in place 1 − decay of the way towards the student, for decay 0.9 and 0.99, "
                 "without a graph and without touching the student",
                 "在 decay 为 0.9 和 0.99 时，目标网络都原地朝学生移动了 1 − decay 的距离，不带计算图，也没有碰学生")


@checked
def check_lcm_timesteps(lcm_timesteps: Callable) -> Verdict:
    """Exercise 3: ``lcm_timesteps(steps, original_steps)`` gives the timesteps of ``LCMScheduler(
    original_inference_steps=original_steps, timestep_spacing="trailing")`` after ``set_timesteps(steps)``, for
    1 to 8 steps on grids of 50 and 25."""
    from diffusers import LCMScheduler

    for original_steps in (50, 25):
        skip = 1000 // original_steps
        grid = [k * skip - 1 for k in range(original_steps, 0, -1)]
        scheduler = LCMScheduler(original_inference_steps=original_steps, timestep_spacing="trailing")
        for steps in range(1, 9):
            scheduler.set_timesteps(steps)
            want = scheduler.timesteps
            got = torch.as_tensor(lcm_timesteps(steps, original_steps))
            if (off := wrong_shape(got, want, f"for {steps} steps it", f"{steps} 步时它")) is not None:
                return off
            mine, theirs = [int(s) for s in got.tolist()], want.tolist()
            if mine == theirs:
                continue
            where_en = f"{steps} steps on the grid of {original_steps}"
            where_zh = f"在 {original_steps} 步的网格上走 {steps} 步"
            if off_grid := [s for s in mine if s not in grid]:
                to_zero = min(mine) < grid[-1]
                return wrong(f"{where_en}: you give {mine}, the scheduler uses {theirs}; {off_grid[0]} is not on the "
                             f"grid ({grid[-1]}, {grid[-2]}, …, {grid[0]}, every {skip}th timestep): the student only "
                             "learned the timesteps it was distilled on, so LCM samples on that grid"
                             + (", not on a linspace from 999 to 0" if to_zero else ""),
                             f"{where_zh}：你给出 {mine}，调度器用的是 {theirs}；{off_grid[0]} 不在网格"
                             f"（{grid[-1]}、{grid[-2]}、…、{grid[0]}，每隔 {skip} 个时间步一个）上：学生只学过"
                             "蒸馏时用过的时间步，所以 LCM 在这个网格上采样"
                             + ("，而不是在从 999 到 0 的 linspace 上" if to_zero else ""))
            if mine != sorted(mine, reverse=True):
                return wrong(f"{where_en}: you give {mine}, the scheduler uses {theirs}; sampling runs from the "
                             "noisy end down: read the grid from 999",
                             f"{where_zh}：你给出 {mine}，调度器用的是 {theirs}；"
                             "采样从噪声最多的一端往下走：从 999 开始读网格")
            return wrong(f"{where_en}: you give {mine}, the scheduler uses {theirs}; it reads the grid from 999 down "
                         f"and takes the indices ⌊i·{original_steps}/{steps}⌋, i = 0, …, {steps - 1}",
                         f"{where_zh}：你给出 {mine}，调度器用的是 {theirs}；它从 999 往下读网格，取下标 "
                         f"⌊i·{original_steps}/{steps}⌋，i = 0、…、{steps - 1}")
    return right("your timesteps are LCMScheduler's for 1 to 8 steps on grids of 50 and 25: evenly spaced indices "
                 "into the teacher's grid, read from 999",
                 "在 50 步和 25 步的网格上，1 到 8 步的时间步都与 LCMScheduler 的一致：从 999 往下读教师的网格，"
                 "取等间隔的下标")
