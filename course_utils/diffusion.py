"""How a diffusion model learns: U-Net and DiT layouts, DDPM and flow-matching targets, loss weighting, the training
loop."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.training_utils import compute_snr
from tqdm.auto import tqdm

from .data import unpack


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


class ClassDiT(torch.nn.Module):
    """diffusers' ``DiTTransformer2DModel`` (chapter 13) behind a class-conditional U-Net's call,
    ``model(x, t, class_labels=...).sample``, so the course's loss and samplers serve both: a scalar timestep is
    broadcast over the batch, and ``config.num_class_embeds`` counts the "no class" label (the last).

    The label table keeps its extra "no class" row, but diffusers' own label dropping (one draw per block) is off:
    ``diffusion_loss`` drops labels once, for the whole model, as it does for the U-Net."""

    def __init__(self, sample_size: int = 28, patch_size: int = 2, in_channels: int = 1, classes: int = 10,
                 num_layers: int = 4, num_attention_heads: int = 4, attention_head_dim: int = 32):
        super().__init__()
        self.dit = DiTTransformer2DModel(sample_size=sample_size, patch_size=patch_size, in_channels=in_channels,
                                         num_embeds_ada_norm=classes, num_layers=num_layers,
                                         num_attention_heads=num_attention_heads,
                                         attention_head_dim=attention_head_dim)
        for block in self.dit.transformer_blocks:
            block.norm1.emb.class_embedder.dropout_prob = 0.0
        self.config = SimpleNamespace(num_class_embeds=classes + 1, sample_size=sample_size, in_channels=in_channels,
                                      patch_size=patch_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(len(x))
        return self.dit(x, timestep=t, class_labels=class_labels)


def default_unet(resolution: int, num_class_embeds: int | None = None) -> tuple[UNet2DModel, str]:
    """The training script's U-Net for a resolution (diffusers' default six levels are too deep under 64 px) and
    its description."""
    if resolution < 8 or resolution % 8:
        raise ValueError(f"--resolution {resolution}: use a multiple of 8 (at least 8), e.g. 32 or 64")
    if resolution <= 16:  # few channels at full resolution, attention at 4x4 (benchmarks/default_unet.py)
        channels, attention = (16, 32, 64), 1
    elif resolution <= 32:
        channels, attention = (64, 128, 128, 256), 2  # chapter 3's model
    else:
        channels, attention = (128, 128, 256, 256, 512, 512), 1  # diffusers' default levels
    levels = int(math.log2(resolution)) - 2  # keep the deepest feature map at 4x4 or more
    channels = channels[: max(2, min(len(channels), levels + 1))]
    attention = min(attention, len(channels))
    model = make_unet(resolution, channels, layers_per_block=2, attention=attention,
                      num_class_embeds=num_class_embeds)
    return model, f"{len(channels)} levels {channels}, attention in the deepest {attention}"


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


def _check_snr_gamma(scheduler, snr_gamma: float | None) -> None:
    """Refuse min-SNR weighting for a flow-matching scheduler (it has no SNR table)."""
    if snr_gamma is not None and is_flow(scheduler):
        raise ValueError("snr_gamma is min-SNR weighting of a DDPM loss; a flow-matching scheduler has no SNR "
                         "table: pass snr_gamma=None")


def diffusion_loss(
    model,
    scheduler,
    clean: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
    class_drop_prob: float = 0.1,
    sigmas: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One training step's loss on a batch of clean images in [-1, 1] (what ``train_ddpm`` and the script share).

    DDPM: Gaussian noise, a random timestep per image, ``add_noise``, MSE against the scheduler's target
    (weighted per image by ``min_snr_weights`` when ``snr_gamma`` is given). Flow matching (a
    ``FlowMatchEulerDiscreteScheduler``): noise levels ``sigmas`` (default uniform in [0, 1]),
    ``flow_matching_inputs``, MSE against the velocity. With ``labels``, each is replaced by the last class
    embedding, "no class", with probability ``class_drop_prob`` (classifier-free guidance). The random draws
    come from ``generator`` (default: torch's global one), on its device. ``noise`` pairs each image with its
    own noise instead of a fresh draw (reflow trains on a flow's (sample, noise) pairs, chapter 12).
    """
    _check_snr_gamma(scheduler, snr_gamma)
    device = clean.device
    draw_on = generator.device if generator is not None else device
    n_steps = scheduler.config.num_train_timesteps
    if noise is None:
        noise = torch.randn(clean.shape, generator=generator, device=draw_on).to(device)
    if is_flow(scheduler):
        if sigmas is None:
            sigmas = torch.rand(len(clean), generator=generator, device=draw_on)
        noisy, target, t = flow_matching_inputs(clean, noise, sigmas.to(device), n_steps)
    else:
        t = torch.randint(0, n_steps, (len(clean),), generator=generator, device=draw_on).to(device)
        noisy, target = scheduler.add_noise(clean, noise, t), ddpm_target(scheduler, clean, noise, t)
    if labels is not None:  # classifier-free guidance: sometimes the model is told "no class"
        no_class = getattr(model, "module", model).config.num_class_embeds - 1  # DDP keeps the config on .module
        drop = torch.rand(len(labels), generator=generator, device=draw_on).to(device) < class_drop_prob
        labels = torch.where(drop, no_class, labels)
    prediction = model(noisy, t, class_labels=labels).sample.float()
    if snr_gamma is None:
        return F.mse_loss(prediction, target.float())
    per_image = F.mse_loss(prediction, target.float(), reduction="none").mean(dim=tuple(range(1, clean.ndim)))
    return (per_image * min_snr_weights(scheduler, t, snr_gamma)).mean()


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

    A batch may be a tensor, an ``(images, labels)`` pair or a dict with ``"images"`` (chapter 3's datasets), and
    ``"labels"`` or ``"noise"`` (each image's paired noise, as reflow trains): ``data.unpack`` reads it.

    Each step is ``diffusion_loss`` (noise, a random timestep per image, ``add_noise``, MSE against the
    scheduler's target; flow matching with a ``FlowMatchEulerDiscreteScheduler``), backward, optimizer step.
    The loss is summed on the device and read once per epoch, so the loop never waits on ``.item()``.
    ``fast=True`` adds bf16 autocast (on CUDA, with TF32 matmuls; fp16 and a loss scaler on a GPU without bf16),
    channels_last and fused AdamW: the same maths at lower precision. ``compile=True`` also runs the model
    through ``torch.compile``. A generator on
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
    _check_snr_gamma(scheduler, snr_gamma)
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
    # bf16 where the GPU has it (Ampere and newer); a T4 (Colab's free GPU) has fp16 only, which needs a loss scaler
    half = torch.bfloat16 if not cuda or torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    autocast = torch.autocast(device.type, dtype=half, enabled=fast and cuda)
    scaler = torch.amp.GradScaler(device.type, enabled=fast and cuda and half == torch.float16)
    means = []
    for _ in tqdm(range(epochs), desc="epochs", leave=False, disable=not progress):
        total, count = torch.zeros((), device=device), 0
        for batch in batches:
            clean, labels, noise = unpack(batch)
            clean = clean.to(device, non_blocking=True)
            labels = labels.to(device) if labels is not None and model.config.num_class_embeds else None
            with autocast:
                loss = diffusion_loss(forward, scheduler, clean, labels, generator=generator, snr_gamma=snr_gamma,
                                      class_drop_prob=class_drop_prob,
                                      noise=noise.to(device) if noise is not None else None)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # without fp16 (bf16, or no autocast): loss.backward(), optimizer.step()
            scaler.step(optimizer)
            scaler.update()
            if lr_scheduler is not None:
                lr_scheduler.step()
            if ema is not None:
                ema.step(model.parameters())
            total += loss.detach()
            count += 1
        means.append(float(total) / max(count, 1))
    return means
