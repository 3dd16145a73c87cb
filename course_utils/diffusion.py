"""How a diffusion model learns: U-Net layouts, DDPM and flow-matching targets, loss weighting, the training loop."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.training_utils import compute_snr
from torch.utils.data import DataLoader
from tqdm.auto import tqdm


def make_unet(
    sample_size: int,
    channels: Sequence[int] = (64, 128, 128, 256),
    layers_per_block: int = 2,
    attention: int = 2,
    in_channels: int = 3,
    num_class_embeds: int | None = None,
) -> UNet2DModel:
    """A UNet2DModel with self-attention in its ``attention`` deepest levels (chapter 3's model by default).

    The defaults give the course's published butterfly model: down blocks DownBlock2D, DownBlock2D,
    AttnDownBlock2D, AttnDownBlock2D and the mirror image going up. ``num_class_embeds`` adds diffusers' class
    embedding (a class-conditioned model, chapter 7).
    """
    if not 0 <= attention <= len(channels):
        raise ValueError(f"attention={attention}: must be between 0 and the number of levels ({len(channels)})")
    plain = len(channels) - attention
    down = ("DownBlock2D",) * plain + ("AttnDownBlock2D",) * attention
    up = ("AttnUpBlock2D",) * attention + ("UpBlock2D",) * plain
    return UNet2DModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
        layers_per_block=layers_per_block, block_out_channels=tuple(channels),
        norm_num_groups=min(32, min(channels) // 2), down_block_types=down, up_block_types=up,
        num_class_embeds=num_class_embeds,
    )


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


def flow_matching_inputs(clean: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
                         num_train_timesteps: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow matching's training inputs for noise levels ``sigmas`` (= t in [0, 1], one per image): the point
    x_t = (1 - t)·x0 + t·noise on the straight line, its velocity target noise - x0, and the U-Net's timesteps
    t·num_train_timesteps (what ``FlowMatchEulerDiscreteScheduler`` passes the U-Net when sampling)."""
    s = sigmas.to(clean.dtype).view(-1, *[1] * (clean.ndim - 1))
    return (1 - s) * clean + s * noise, noise - clean, sigmas * num_train_timesteps


def flow_sigmas(steps: int) -> list[float]:
    """``steps`` evenly spaced noise levels 1, 1 - 1/steps, ..., 1/steps (the scheduler appends 0), as diffusers'
    SD3 and Flux pipelines pass them to ``FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=...)``. The
    scheduler's own ``set_timesteps(steps)`` ends its grid at 1/1000, so its last step (0.001 to 0) is wasted."""
    return [1 - i / steps for i in range(steps)]


def is_flow(scheduler) -> bool:
    """Whether ``scheduler`` is a flow-matching one (``FlowMatchEulerDiscreteScheduler``) rather than a DDPM one."""
    return isinstance(scheduler, FlowMatchEulerDiscreteScheduler)


def min_snr_weights(scheduler: DDPMScheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights for timesteps ``t`` under the scheduler's target: min(SNR, gamma) / SNR for
    epsilon, / (SNR + 1) for v, / 1 for x0 (each target's loss is then the same min(SNR, gamma)-weighted x0 error).
    """
    snr = compute_snr(scheduler, t)  # alpha_bar / (1 - alpha_bar), as diffusers' training scripts compute it
    clipped = snr.clamp(max=gamma)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return clipped / snr
    if kind == "v_prediction":
        return clipped / (snr + 1)
    return clipped


def _images(batch) -> torch.Tensor:
    """The image tensor of a batch: the batch itself, its first element, or its ``"images"`` entry."""
    if isinstance(batch, dict):
        return batch["images"]
    return batch[0] if isinstance(batch, list | tuple) else batch


def train_ddpm(
    model: UNet2DModel,
    scheduler: DDPMScheduler,
    batches: Iterable,
    epochs: int,
    lr: float,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    fast: bool = False,
    compile: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    ema=None,
    class_drop_prob: float = 0.1,
    progress: bool = True,
    lr_scheduler=None,
    snr_gamma: float | None = None,
) -> list[float]:
    """Train a UNet2DModel on batches of images in [-1, 1]; return each epoch's mean loss.

    A batch may be a tensor, an ``(images, labels)`` pair or a dict with ``"images"`` (chapter 3's datasets).

    Each step: Gaussian noise, a random timestep per image, ``add_noise``, MSE against the scheduler's target.
    With a ``FlowMatchEulerDiscreteScheduler`` it is flow matching instead (chapter 12): t uniform in [0, 1],
    ``flow_matching_inputs``, MSE against the velocity noise - x0.
    The loss is summed on the device and read once per epoch, so the loop never waits on ``.item()``.
    ``fast=True`` adds bf16 autocast (on CUDA, with TF32 matmuls), channels_last and fused AdamW: the same
    maths at lower precision. ``compile=True`` also runs the model through ``torch.compile``. A generator on
    the training device keeps the noise there (no copy from the host each step). Pass ``optimizer`` to
    continue training across calls (default: a new AdamW), and a ``diffusers.training_utils.EMAModel`` as
    ``ema`` to update its moving average after every step. A class-conditioned UNet (``num_class_embeds``) takes
    ``(images, labels)`` batches; each label is replaced by the last class, "no class", with probability
    ``class_drop_prob``, so the one model also learns the unconditional prediction (classifier-free guidance).
    ``progress=False`` hides the epoch bar (for callers that train a step at a time in their own loop).
    ``lr_scheduler`` (a ``torch.optim.lr_scheduler`` on ``optimizer``) is stepped after every optimizer step.
    ``snr_gamma`` weights each image's loss by min-SNR (Hang et al. 2023): timesteps whose signal-to-noise
    ratio is above ``snr_gamma`` count less, so the easy, nearly clean steps do not dominate the gradient.
    """
    if snr_gamma is not None and is_flow(scheduler):
        raise ValueError("snr_gamma is min-SNR weighting of a DDPM loss; a flow-matching scheduler has no SNR "
                         "table: pass snr_gamma=None")
    device = torch.device(device)
    model.to(device).train()
    cuda = device.type == "cuda"
    if fast:
        model.to(memory_format=torch.channels_last)
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fast and cuda)
    forward = torch.compile(model) if compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast and cuda)
    n_steps = scheduler.config.num_train_timesteps
    noise_device = generator.device if generator is not None else device
    means = []
    for _ in tqdm(range(epochs), desc="epochs", leave=False, disable=not progress):
        total, count = torch.zeros((), device=device), 0
        for batch in batches:
            clean = _images(batch).to(device, non_blocking=True)
            noise = torch.randn(clean.shape, generator=generator, device=noise_device).to(device)
            if is_flow(scheduler):
                sigmas = torch.rand(len(clean), generator=generator, device=noise_device).to(device)
                noisy, target, t = flow_matching_inputs(clean, noise, sigmas, n_steps)
            else:
                t = torch.randint(0, n_steps, (len(clean),), generator=generator, device=noise_device).to(device)
                noisy, target = scheduler.add_noise(clean, noise, t), ddpm_target(scheduler, clean, noise, t)
            labels = None
            if model.config.num_class_embeds:
                labels = batch[1].to(device)
                drop = torch.rand(len(labels), generator=generator, device=noise_device).to(device) < class_drop_prob
                labels = torch.where(drop, model.config.num_class_embeds - 1, labels)
            with autocast:
                prediction = forward(noisy, t, class_labels=labels).sample
            if snr_gamma is None:
                loss = F.mse_loss(prediction.float(), target)
            else:
                per_image = F.mse_loss(prediction.float(), target, reduction="none").mean(dim=(1, 2, 3))
                loss = (per_image * min_snr_weights(scheduler, t, snr_gamma)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if lr_scheduler is not None:
                lr_scheduler.step()
            if ema is not None:
                ema.step(model.parameters())
            total += loss.detach()
            count += 1
        means.append(float(total) / max(count, 1))
    return means


def tiny_butterfly_pipeline(folder: str | Path, n_images: int = 64, epochs: int = 3, seed: int = 0) -> Path:
    """Train a tiny 32-px pipeline on synthetic butterflies for a few seconds and save it to ``folder``.

    A stand-in for chapter 3's pipeline when a learner starts at chapter 4: it runs, but it samples blobs.
    """
    from .data import load_butterflies, with_preprocessing
    from .files import save_pipeline

    torch.manual_seed(seed)
    dataset = with_preprocessing(load_butterflies(n_synthetic=n_images, offline=True).dataset, 32)
    loader = DataLoader(dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    unet = make_unet(32, channels=(16, 32), layers_per_block=1, attention=0)
    train_ddpm(unet, scheduler, loader, epochs, lr=1e-3, generator=torch.Generator().manual_seed(seed))
    return save_pipeline(DDPMPipeline(unet=unet.eval(), scheduler=scheduler), folder)

