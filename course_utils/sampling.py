"""How a diffusion model draws: DDPM/flow sampling, DDIM by hand, classifier-free and loss guidance, DDIM inversion."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDPMScheduler, UNet2DModel

from .diffusion import flow_sigmas, is_flow


@torch.no_grad()
def sample_ddpm(
    model: UNet2DModel,
    scheduler: DDPMScheduler,
    n: int,
    steps: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate ``n`` images in [-1, 1] with ``steps`` steps of the scheduler (a copy: the caller's is untouched)
    from ``noise`` (default: drawn with ``seed``); a flow-matching scheduler gets ``flow_sigmas(steps)``, evenly
    spaced as the SD3 and Flux pipelines space them."""
    scheduler = type(scheduler).from_config(scheduler.config)
    if is_flow(scheduler):
        scheduler.set_timesteps(sigmas=flow_sigmas(steps))
    else:
        scheduler.set_timesteps(steps)
    model.to(device).eval()
    size = model.config.sample_size
    shape = (n, model.config.in_channels, *((size, size) if isinstance(size, int) else size))
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=generator) if noise is None else noise).to(device)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t).sample, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1).cpu()


@torch.no_grad()
def sample_with_guidance(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    steps: int,
    labels: torch.Tensor,
    guidance_scale: float = 1.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sample a class-conditioned UNet with classifier-free guidance; images in [-1, 1], one per label.

    The UNet's last class embedding means "no class". Each step predicts the noise twice, with and without
    the label, and mixes them: eps = eps_uncond + s * (eps_cond - eps_uncond). At s = 1 that is the
    conditional prediction alone (computed once); at s = 0 the unconditional one.
    """
    scheduler = type(scheduler).from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    unet.to(device).eval()
    labels = labels.to(device)
    no_class = torch.full_like(labels, unet.config.num_class_embeds - 1)
    size = unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), unet.config.in_channels, size, size), generator=generator).to(device)
    for t in scheduler.timesteps:
        if guidance_scale == 1:
            eps = unet(x, t, class_labels=labels).sample
        else:
            both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, no_class])).sample
            eps_cond, eps_uncond = both.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1).cpu()



# ---- Chapters 6-7: DDIM by hand, loss guidance ------------------------------------------------------------


def predicted_x0_and_noise(
    scheduler: DDPMScheduler, model_output: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a model output as (predicted x_0, predicted noise) under the scheduler's ``prediction_type``, unclipped."""
    a = scheduler.alphas_cumprod.to(x.device)[t]
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (x - (1 - a).sqrt() * model_output) / a.sqrt(), model_output
    if kind == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * model_output, a.sqrt() * model_output + (1 - a).sqrt() * x
    if kind == "sample":
        return model_output, (x - a.sqrt() * model_output) / (1 - a).sqrt()
    raise ValueError(f"prediction_type={kind!r}: use 'epsilon', 'sample' or 'v_prediction'")


def ddim_step(
    scheduler: DDPMScheduler, model_output: torch.Tensor, t: int, t_next: int, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0) from timestep ``t`` to ``t_next``: returns (x_{t_next}, predicted x_0).

    x_0 is predicted from x_t (and clipped as the scheduler clips it), then noised again to the level of
    ``t_next`` with the *predicted* noise: x_next = sqrt(abar_next) x_0 + sqrt(1 - abar_next) eps. A ``t_next``
    below 0 means the end of sampling (abar = 1); a ``t_next`` above ``t`` runs the step backwards (DDIM inversion).
    """
    x0, eps = predicted_x0_and_noise(scheduler, model_output, t, x)
    if scheduler.config.clip_sample:
        limit = scheduler.config.clip_sample_range
        x0 = x0.clamp(-limit, limit)
    abar = scheduler.alphas_cumprod.to(x.device)
    a_next = abar[t_next] if t_next >= 0 else torch.ones((), device=x.device)
    return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps, x0


def sample_with_loss_guidance(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    n: int,
    steps: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    scale: float,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sample ``n`` images in [-1, 1] with loss guidance (chapter 7); at ``scale`` 0 this is ``sample_ddpm``.

    Each step predicts x_0 from x_t, maps it to [0, 1] and scores it with ``loss_fn`` (one loss per image); x_t
    moves against the gradient of the summed losses, ``x_t -= scale * grad``, and the scheduler takes its step
    from there with the same noise prediction. Summing (not averaging) keeps a scale's meaning independent of n.
    """
    scheduler = type(scheduler).from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    unet.to(device).eval().requires_grad_(False)
    size = unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, unet.config.in_channels, size, size), generator=generator).to(device)
    for t in scheduler.timesteps:
        x = x.detach().requires_grad_(scale != 0)
        with torch.set_grad_enabled(scale != 0):
            output = unet(x, t).sample
            if scale != 0:
                x0 = predicted_x0_and_noise(scheduler, output, t, x)[0]
                grad = torch.autograd.grad(loss_fn((x0 + 1) / 2).sum(), x)[0]
                x = x.detach() - scale * grad
        x = scheduler.step(output.detach(), t, x.detach(), generator=generator).prev_sample
    return x.clamp(-1, 1).cpu()



# ---- Chapter 9: DDIM inversion ------------------------------------------------------------------------------


def ddim_timesteps(scheduler, steps: int) -> list[int]:
    """The scheduler's ``steps`` DDIM timesteps, ascending (e.g. 1, 21, ..., 981 for 50 of 1,000 with offset 1)."""
    scheduler.set_timesteps(steps)
    return sorted(int(t) for t in scheduler.timesteps)


@torch.no_grad()
def ddim_invert(predict: Callable, scheduler, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """DDIM run backwards: the noise x_T from which ``ddim_regenerate`` (same ``predict``) draws ``x0`` again.

    ``predict(x, t)`` is the model output at timestep t (for a text model: the U-Net with the prompt, with or
    without guidance). x0 stands in for x at the first timestep (abar there is 0.998); each step goes up one
    timestep with the noise predicted at the current point, which is the approximation that makes the
    round trip inexact: the prediction at the next point is not known yet.
    """
    return _ddim_walk(predict, scheduler, x0, ddim_timesteps(scheduler, steps))


@torch.no_grad()
def ddim_regenerate(predict: Callable, scheduler, xT: torch.Tensor, steps: int) -> torch.Tensor:
    """DDIM from x_T at the last of ``steps`` timesteps down to the first: the way back of ``ddim_invert``."""
    return _ddim_walk(predict, scheduler, xT, ddim_timesteps(scheduler, steps)[::-1])


def _ddim_walk(predict: Callable, scheduler, x: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """DDIM steps from each timestep to the next in ``timesteps`` (ascending: inversion; descending: sampling)."""
    for t, t_next in zip(timesteps[:-1], timesteps[1:], strict=True):
        x = ddim_step(scheduler, predict(x, t), t, t_next, x)[0]
    return x


def sample_grid(pipeline, n: int, steps: int, seed: int = 0, names: list[str] | None = None):
    """A grid of ``n`` samples (with ``names``: up to 8 per class, a row each) as a PIL image and as a
    (N, C, H, W) uint8 array for TensorBoard."""
    from .viz import make_grid

    if names:
        labels = torch.arange(len(names)).repeat_interleave(min(n, 8))
        x = sample_with_guidance(pipeline.unet, pipeline.scheduler, steps, labels=labels, guidance_scale=1.0,
                                 seed=seed, device=pipeline.device)
        images = ((x + 1) / 2).permute(0, 2, 3, 1).float().numpy()
    else:
        generator = torch.Generator(pipeline.device).manual_seed(seed)
        images = pipeline(batch_size=n, generator=generator, num_inference_steps=steps, output_type="np").images
    grid = make_grid(pipeline.numpy_to_pil(images), cols=min(n, 8))
    return grid, (images * 255).round().astype("uint8").transpose(0, 3, 1, 2)
