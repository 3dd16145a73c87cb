"""DDPM training targets, a plain training loop and a sampler, shared by the chapters that train."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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


def decode_images(images: Iterable, size: int) -> torch.Tensor:
    """Decode, convert to RGB and resize PIL images once, into one (N, 3, size, size) uint8 tensor.

    The same pixels chapter 3's ``Resize`` + ``ToTensor`` give, computed once instead of every epoch.
    """
    from torchvision.transforms import functional as TF

    from .imagefolder import to_rgb

    return torch.stack([TF.pil_to_tensor(TF.resize(to_rgb(im), [size, size])) for im in images])


class DeviceBatches:
    """Shuffled training batches drawn from a uint8 image tensor kept on the device; flips done on the device.

    Iterating gives float batches in [-1, 1] (channels_last), one epoch per iteration, with no host work
    beyond launching kernels: the fast path's replacement for ``DataLoader`` + ``set_transform``.
    With ``rank`` and ``world`` (several processes), every process draws the same shuffled order and takes
    its own share of the batches, the same number each so that no process waits for a missing step.
    With ``labels`` (one per image), each batch is an ``(images, labels)`` pair.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device | str, flip: bool = True,
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1,
                 labels: torch.Tensor | None = None):
        self.images = images.to(device)
        self.labels = labels.to(device) if labels is not None else None
        self.batch_size, self.flip, self.shuffle, self.rank, self.world = batch_size, flip, shuffle, rank, world
        self.seed = seed
        self.order_generator = torch.Generator(self.images.device).manual_seed(seed)  # same in every process
        self.flip_generator = torch.Generator(self.images.device).manual_seed(seed + 1 + rank)

    def __len__(self) -> int:
        batches = -(-len(self.images) // self.batch_size)
        return batches if self.world == 1 else batches // self.world

    def set_epoch(self, epoch: int) -> None:
        """Fix the shuffled order of ``epoch`` (so a resumed run sees the order it would have seen)."""
        self.order_generator.manual_seed(self.seed + epoch)

    def __iter__(self):
        n = len(self.images)
        order = (torch.randperm(n, device=self.images.device, generator=self.order_generator) if self.shuffle
                 else torch.arange(n, device=self.images.device))
        chunks = order.split(self.batch_size)[self.rank::self.world][: len(self)]
        for idx in chunks:
            x = self.images[idx].float().div_(127.5).sub_(1)
            if self.flip:
                mask = torch.rand(len(x), 1, 1, 1, device=x.device, generator=self.flip_generator) < 0.5
                x = torch.where(mask, x.flip(-1), x)
            x = x.contiguous(memory_format=torch.channels_last)
            yield x if self.labels is None else (x, self.labels[idx])


@torch.no_grad()
def sample_ddpm(
    model: UNet2DModel,
    scheduler: DDPMScheduler,
    n: int,
    steps: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Generate ``n`` images in [-1, 1] with ``steps`` steps of the scheduler (a copy: the caller's is untouched);
    a flow-matching scheduler gets ``flow_sigmas(steps)``, evenly spaced as the SD3 and Flux pipelines space them."""
    scheduler = type(scheduler).from_config(scheduler.config)
    if is_flow(scheduler):
        scheduler.set_timesteps(sigmas=flow_sigmas(steps))
    else:
        scheduler.set_timesteps(steps)
    model.to(device).eval()
    size = model.config.sample_size
    shape = (n, model.config.in_channels, *((size, size) if isinstance(size, int) else size))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).to(device)
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


# ---- Chapters 6-7: DDIM by hand, guided sampling, LoRA -----------------------------------------------------


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


LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")


def add_lora(unet: UNet2DModel, rank: int = 8, targets: Sequence[str] = LORA_TARGETS, seed: int = 0):
    """Wrap a UNet2DModel with LoRA adapters (``peft``) on its attention projections and resnet convolutions.

    Returns the ``peft.PeftModel``: only the adapters train, the base weights are frozen; ``save_pretrained``
    writes the adapters alone, ``merge_and_unload()`` folds them into the base weights. The wrapped UNet is
    changed in place (its layers now carry the adapters).
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # the adapters' A matrices start random (B starts at zero: no change at first)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), lora_dropout=0.0)
    return get_peft_model(unet, config)


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
