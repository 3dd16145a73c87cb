"""DDPM training targets, a plain training loop and a sampler, shared by the chapters that train."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from tqdm.auto import tqdm


def ddpm_target(scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the model learns to output under the scheduler's ``prediction_type``: noise, x0 or velocity."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return clean
    if kind == "v_prediction":
        return scheduler.get_velocity(clean, noise, t)
    raise ValueError(f"prediction_type={kind!r}: use 'epsilon', 'sample' or 'v_prediction'")


def train_ddpm(
    model: UNet2DModel,
    scheduler: DDPMScheduler,
    batches: Iterable,
    epochs: int,
    lr: float,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train a UNet2DModel on batches of images in [-1, 1] (or (image, label) pairs); return each epoch's mean loss.

    Each step: Gaussian noise, a random timestep per image, ``add_noise``, MSE against the scheduler's target.
    The loss is summed on the device and read once per epoch, so the loop never waits on ``.item()``.
    """
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    n_steps = scheduler.config.num_train_timesteps
    means = []
    for _ in tqdm(range(epochs), desc="epochs", leave=False):
        total, count = torch.zeros((), device=device), 0
        for batch in batches:
            clean = (batch[0] if isinstance(batch, list | tuple) else batch).to(device)
            noise = torch.randn(clean.shape, generator=generator).to(device)
            t = torch.randint(0, n_steps, (len(clean),), generator=generator).to(device)
            prediction = model(scheduler.add_noise(clean, noise, t), t).sample
            loss = F.mse_loss(prediction, ddpm_target(scheduler, clean, noise, t))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach()
            count += 1
        means.append(float(total) / max(count, 1))
    return means


@torch.no_grad()
def sample_ddpm(
    model: UNet2DModel,
    scheduler: DDPMScheduler,
    n: int,
    steps: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Generate ``n`` images in [-1, 1] with ``steps`` steps of the scheduler (a copy: the caller's is untouched)."""
    scheduler = type(scheduler).from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    model.to(device).eval()
    size = model.config.sample_size
    shape = (n, model.config.in_channels, *((size, size) if isinstance(size, int) else size))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).to(device)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t).sample, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1).cpu()
