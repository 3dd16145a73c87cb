"""Consistency distillation (chapter 14): a teacher's many ODE steps distilled into a student that jumps to the end.

The chapter writes each piece out first; these are the same pieces, proven equal there on a seed:

- ``boundary_scalings``: LCM's ``c_skip(t)`` and ``c_out(t)`` (``c_skip(0) = 1``, ``c_out(0) = 0``);
- ``consistency``: ``f(x, t) = c_skip(t) x + c_out(t) x0(x, t)``, so ``f(x, 0) = x``;
- ``on_grid``, ``ddim_step``, ``distance``: a point on the teacher's grid, its ODE step, the loss (also LCM-LoRA's);
- ``teacher_solve``: the teacher's ODE from ``t_{n+1}`` down to ``t_n`` in one DDIM step (LCM) or several;
- ``distil_step``: one loss, student at ``t_{n+1}`` against the EMA target where the teacher's steps end, ``t_n``;
- ``distil``: the training loop (AdamW, gradient clipping, the target network as an EMA of the student);
- ``lcm_scheduler``: diffusers' ``LCMScheduler`` on the teacher's schedule, which samples the student.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import LCMScheduler

SIGMA_DATA, TIMESTEP_SCALING = 0.5, 10.0  # LCMScheduler's defaults
HUBER_C = 0.001  # LCM's pseudo-Huber constant (diffusers' train_lcm_distill_sd_wds.py, --huber_c)


def boundary_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's c_skip(t) = s^2 / ((10 t)^2 + s^2) and c_out(t) = 10 t / sqrt((10 t)^2 + s^2), shaped (n, 1, 1, 1)."""
    scaled = TIMESTEP_SCALING * t.float()
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def x0_and_noise(output: torch.Tensor, x: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                 prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean image and the noise that a U-Net's output at (x, t) implies, for a v- or epsilon-prediction."""
    alphas_cumprod, t = alphas_cumprod.to(x.device), t.to(x.device)
    a = alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    s = (1 - alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    if prediction_type == "v_prediction":  # v = a * noise - s * x0
        return a * x - s * output, a * output + s * x
    if prediction_type == "epsilon":
        return (x - s * output) / a, output
    raise ValueError(f"prediction_type {prediction_type!r}: consistency distillation here takes a v- or "
                     "epsilon-prediction U-Net (a DDPM schedule)")


def consistency(unet, x: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str,
                clip: bool = False) -> torch.Tensor:
    """f(x, t) = c_skip(t) x + c_out(t) x0(x, t): the U-Net's clean-image estimate, pinned to x itself at t = 0."""
    t = t.to(x.device)
    x0, _ = x0_and_noise(unet(x, t).sample, x, t, alphas_cumprod, prediction_type)
    c_skip, c_out = boundary_scalings(t)
    return c_skip * x + c_out * (x0.clamp(-1, 1) if clip else x0)


def on_grid(images: torch.Tensor, skip: int, alphas_cumprod: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_{t_{n+1}}, t_{n+1}, t_n): a timestep per image on the teacher's grid (skip - 1, 2 skip - 1, ..., 999), the
    forward process of the clean ``images`` there, and the timestep one teacher step down (t_{n+1} - skip, or 0).
    The timesteps and the noise are drawn on the CPU: one seed gives the same draws on any device."""
    alphas_cumprod = alphas_cumprod.to(images.device)
    grid = torch.arange(1, len(alphas_cumprod) // skip + 1) * skip - 1
    t_next = grid[torch.randint(0, len(grid), (len(images),), generator=generator)].to(images.device)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    a = alphas_cumprod[t_next].view(-1, 1, 1, 1)
    return a.sqrt() * images + (1 - a).sqrt() * noise, t_next, (t_next - skip).clamp(min=0)


def ddim_step(x0: torch.Tensor, noise: torch.Tensor, t_prev: torch.Tensor,
              alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step (eta 0): the clean estimate put back at noise level t_prev with its noise."""
    a_prev = alphas_cumprod.to(x0.device)[t_prev].view(-1, 1, 1, 1)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * noise


@torch.no_grad()
def teacher_solve(teacher, x: torch.Tensor, t: torch.Tensor, skip: int, teacher_steps: int,
                  alphas_cumprod: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The teacher's probability-flow ODE from ``x`` at ``t`` down to ``t - skip`` (or 0): ``teacher_steps`` equal
    DDIM steps of ``skip / teacher_steps`` timesteps (1: LCM's single step; 5 over a skip of 100: the same 50-step
    DDIM grid, five of its steps at a time)."""
    for _ in range(teacher_steps):
        t_to = (t - skip // teacher_steps).clamp(min=0)
        x0, noise = x0_and_noise(teacher(x, t).sample, x, t, alphas_cumprod, prediction_type)
        x, t = ddim_step(x0, noise, t_to, alphas_cumprod), t_to
    return x


def distance(prediction: torch.Tensor, aim: torch.Tensor, loss: str = "l2") -> torch.Tensor:
    """The consistency loss between the student's answer and the target's: squared error, or LCM's pseudo-Huber."""
    if loss == "huber":
        return ((prediction - aim) ** 2 + HUBER_C**2).sqrt().sub(HUBER_C).mean()
    return F.mse_loss(prediction, aim)


def distil_step(student, target, teacher, images: torch.Tensor, skip: int, alphas_cumprod: torch.Tensor,
                prediction_type: str, generator: torch.Generator, loss: str = "l2",
                teacher_steps: int = 1) -> torch.Tensor:
    """One consistency-distillation loss on clean images in [-1, 1] (LCM's training step, without guidance).

    A point on the teacher's grid (``on_grid``), the student's f at t_{n+1}; the teacher's ODE down to t_n
    (``teacher_solve``: one DDIM step, as LCM, or ``teacher_steps``), the target's f at t_n; the ``distance``.
    """
    x_next, t_next, t_prev = on_grid(images, skip, alphas_cumprod, generator)
    prediction = consistency(student, x_next, t_next, alphas_cumprod, prediction_type)
    with torch.no_grad():
        x_prev = teacher_solve(teacher, x_next, t_next, skip, teacher_steps, alphas_cumprod, prediction_type)
        aim = consistency(target, x_prev, t_prev, alphas_cumprod, prediction_type)
    return distance(prediction, aim, loss)


@torch.no_grad()
def ema_update(target, student, decay: float) -> None:
    """target <- decay * target + (1 - decay) * student, parameter by parameter."""
    for p_target, p_student in zip(target.parameters(), student.parameters(), strict=True):
        p_target.lerp_(p_student, 1 - decay)


def lcm_scheduler(config: dict, skip: int = 20) -> LCMScheduler:
    """diffusers' ``LCMScheduler`` from a teacher's DDPM/DDIM scheduler config, on the teacher's grid of ``1000 /
    skip`` timesteps (``original_inference_steps``); its timesteps always end at 999 ("trailing")."""
    accepted = set(inspect.signature(LCMScheduler.__init__).parameters)
    kept = {k: v for k, v in dict(config).items() if k in accepted}
    return LCMScheduler(**{**kept, "timestep_spacing": "trailing",
                           "original_inference_steps": config["num_train_timesteps"] // skip})


def distil(teacher, scheduler_config: dict, images: torch.Tensor, steps: int, batch: int = 32, skip: int = 20,
           ema: float = 0.95, lr: float = 1e-4, loss: str = "l2", teacher_steps: int = 1, seed: int = 0,
           report: Callable[[int, float, float], None] | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Distil the U-Net ``teacher`` into a consistency model on ``images`` (clean, in [-1, 1]).

    The student starts as a copy of the teacher; the target network is an EMA (``ema``) of the student. AdamW at a
    constant ``lr``, gradient norm clipped at 1, shuffled batches of ``batch``. ``report(step, mean loss,
    seconds)`` is called every 10 steps. Returns the student (in eval mode) and the loss of every step.
    """
    if steps < 1 or batch < 1 or not 0 <= ema < 1 or 1000 % skip or teacher_steps < 1 or skip % teacher_steps:
        raise ValueError(f"distil: steps {steps} and batch {batch} must be at least 1, ema {ema} in [0, 1), "
                         f"skip {skip} a divisor of 1000, teacher_steps {teacher_steps} a divisor of the skip")
    prediction_type = scheduler_config["prediction_type"]
    alphas_cumprod = lcm_scheduler(scheduler_config, skip).alphas_cumprod
    teacher = teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    target = copy.deepcopy(teacher).train().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order, position, losses, start = torch.randperm(len(images), generator=generator), 0, [], time.perf_counter()
    for step in range(1, steps + 1):
        if position + batch > len(order):  # a new epoch, reshuffled
            order, position = torch.randperm(len(images), generator=generator), 0
        value = distil_step(student, target, teacher, images[order[position: position + batch]], skip,
                            alphas_cumprod, prediction_type, generator, loss, teacher_steps)
        position += batch
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        ema_update(target, student, ema)
        losses.append(value.item())
        if report and (step % 10 == 0 or step == steps):
            report(step, sum(losses[-10:]) / len(losses[-10:]), time.perf_counter() - start)
    return student.eval().requires_grad_(False), losses
