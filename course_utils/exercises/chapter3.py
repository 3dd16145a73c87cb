"""Chapter 3's exercises: the lazy transform, the flip augmentation, one step of the training loop, the sampling
loop that DDPMPipeline runs."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from PIL import Image

from ..data import butterfly_transform
from . import Verdict, checked, right, wrong


def _scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """Chapter 3's scheduler: 1,000 steps of the cosine schedule."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)


def _tiny_unet() -> UNet2DModel:
    """A small U-Net with fixed random weights (seconds to run on a CPU)."""
    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def _batch(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Clean images in [-1, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _pictures() -> list[Image.Image]:
    """Six pictures as a dataset stores them: sizes vary, and some are not RGB (grayscale, a palette)."""
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (48, 40), (50, 50), (33, 70), (64, 64), (40, 48)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    images[2], images[5] = images[2].convert("L"), images[5].convert("P")
    return images


@checked
def check_preprocess(preprocess: Callable) -> Verdict:
    """``preprocess(batch)`` must turn ``{"image": [PIL images]}`` into ``{"images": [tensors]}``: RGB, 32x32,
    each mirrored or not, in [-1, 1] -- what ``set_transform`` hands the training loop."""
    pictures = _pictures()
    out = preprocess({"image": pictures})
    if not isinstance(out, dict) or "images" not in out:
        got = f"a dict with keys {sorted(out)}" if isinstance(out, dict) else type(out).__name__
        return wrong(f"preprocess returned {got}; return a dict whose key \"images\" holds one tensor per picture "
                     "(the key the training loop reads)",
                     f"preprocess 返回了 {got}；应返回一个字典，其键 \"images\" 对应每张图一个张量（训练循环读取的键）")
    images = list(out["images"])
    if len(images) != len(pictures):
        return wrong(f"preprocess gave {len(images)} tensors for {len(pictures)} pictures: one per picture",
                     f"{len(pictures)} 张图，preprocess 却给出了 {len(images)} 个张量：应每张图一个")
    for i, (x, picture) in enumerate(zip(images, pictures, strict=True)):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        if shape == (3, 32, 32):
            continue
        if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[0] != 3:
            return wrong(f"picture {i} (PIL mode {picture.mode!r}) became {shape}: convert every picture to RGB "
                         "first (image.convert(\"RGB\")), so that each has 3 channels",
                         f"第 {i} 张图（PIL 模式 {picture.mode!r}）变成了 {shape}：先把每张图转成 RGB"
                         "（image.convert(\"RGB\")），使每张都有 3 个通道")
        return wrong(f"picture {i} ({picture.width}x{picture.height}) became {shape}; every tensor should be "
                     "(3, 32, 32): transforms.Resize((32, 32)) then transforms.ToTensor()",
                     f"第 {i} 张图（{picture.width}x{picture.height}）变成了 {shape}；每个张量都应是 (3, 32, 32)："
                     "先 transforms.Resize((32, 32))，再 transforms.ToTensor()")
    reference = butterfly_transform(32, flip=False)
    refs = [reference(picture.convert("RGB")) for picture in pictures]
    unscaled = all(torch.allclose(x, (r + 1) / 2, atol=1e-4) or torch.allclose(x, (r.flip(-1) + 1) / 2, atol=1e-4)
                   for x, r in zip(images, refs, strict=True))
    if unscaled:
        return wrong("your values are in [0, 1]: the model is trained on [-1, 1], add "
                     "transforms.Normalize([0.5], [0.5]) after ToTensor",
                     "你的数值在 [0, 1] 之间：模型训练用的是 [-1, 1]，请在 ToTensor 之后加上 "
                     "transforms.Normalize([0.5], [0.5])")
    for i, (x, r) in enumerate(zip(images, refs, strict=True)):
        if not (torch.allclose(x, r, atol=1e-4) or torch.allclose(x, r.flip(-1), atol=1e-4)):
            gap = float(torch.minimum((x - r).abs().max(), (x - r.flip(-1)).abs().max()))
            return wrong(f"picture {i} is off by up to {gap:.3g} from Resize((32, 32)), ToTensor and Normalize([0.5], "
                         "[0.5]) of the RGB picture (mirrored or not)",
                         f"第 {i} 张图与 RGB 图经 Resize((32, 32))、ToTensor、Normalize([0.5], [0.5]) 的结果"
                         f"（镜像或不镜像）最多相差 {gap:.3g}")
    same = pictures[0]
    repeats = preprocess({"image": [same] * 40})["images"]
    mirrored = sum(not torch.allclose(x, refs[0], atol=1e-4) for x in repeats)
    if not 8 <= mirrored <= 32:
        return wrong(f"the same picture, read 40 times, came back mirrored {mirrored} times: with "
                     "transforms.RandomHorizontalFlip() about half of the reads are mirrored, a fresh coin each time",
                     f"同一张图读 40 次，被镜像了 {mirrored} 次：用 transforms.RandomHorizontalFlip() 时"
                     "大约一半会被镜像，每次重新抛硬币")
    return right(f"RGB, 32x32, in [-1, 1], and the same picture read 40 times came back mirrored {mirrored} times",
                 f"RGB、32x32、数值在 [-1, 1]；同一张图读 40 次，被镜像了 {mirrored} 次")


@checked
def check_random_flip(random_flip: Callable) -> Verdict:
    """``random_flip(images, generator)`` must mirror each image left-right with probability 1/2, nothing else."""
    images = _batch(n=400, size=8, seed=2)
    out = random_flip(images, torch.Generator().manual_seed(0))
    if not isinstance(out, torch.Tensor) or out.shape != images.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return wrong(f"random_flip returned {shape}; it should keep the batch's shape {tuple(images.shape)}",
                     f"random_flip 返回了 {shape}；应保持批次的形状 {tuple(images.shape)}")
    kept = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    upside_down = (out == images.flip(-2)).flatten(1).all(1)
    if (upside_down & ~kept).any() and not (mirrored & ~kept).any():
        return wrong("your flip turns images upside down (the height axis): mirror the width, the last axis",
                     "你的翻转把图像上下颠倒了（高度轴）：应沿宽度，也就是最后一个轴，左右镜像")
    odd = int((~(kept | mirrored)).sum())
    if odd:
        return wrong(f"{odd} of 400 images are neither the original nor its left-right mirror: flip whole images, "
                     "one coin per image, and change nothing else",
                     f"400 张图里有 {odd} 张既不是原图也不是左右镜像：每张图抛一次硬币，整张翻转，其余不变")
    share = float((mirrored & ~kept).float().mean())
    if not 0.4 <= share <= 0.6:
        return wrong(f"{share:.0%} of the images were mirrored; with probability 1/2 it should be about half",
                     f"{share:.0%} 的图像被镜像了；概率为 1/2 时应约为一半")
    return right(f"every image is itself or its mirror, and {share:.0%} were mirrored",
                 f"每张图都是原图或其镜像，其中 {share:.0%} 被镜像")


def reference_train_step(model: UNet2DModel, scheduler: DDPMScheduler, optimizer: torch.optim.Optimizer,
                         clean: torch.Tensor, generator: torch.Generator) -> float:
    """One step of chapter 3's loop with the noise target: noise, then timesteps, drawn from ``generator``; the
    MSE against the noise; backward, an optimizer step, gradients zeroed. Returns the loss."""
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator)
    loss = F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, noise)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def _two_steps(train_step: Callable, steps: int = 2) -> tuple[list, list[torch.Tensor]]:
    """What ``train_step`` returns on ``steps`` batches, and the weights after each step (fresh model, AdamW)."""
    model = copy.deepcopy(_tiny_unet()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator, scheduler = torch.Generator().manual_seed(0), _scheduler()
    losses, weights = [], []
    for k in range(steps):
        losses.append(train_step(model, scheduler, optimizer, _batch(seed=k), generator))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return losses, weights


@checked
def check_train_step(train_step: Callable) -> Verdict:
    """``train_step(model, scheduler, optimizer, clean, generator)`` must do one step of the loop (noise target)
    and return its loss: two steps from the same start give the reference's losses and weights."""
    start = torch.cat([p.detach().flatten() for p in _tiny_unet().parameters()])
    losses, weights = _two_steps(train_step)
    ref_losses, ref_weights = _two_steps(reference_train_step)
    for k, loss in enumerate(losses):
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            losses[k] = loss = loss.item()
        if not isinstance(loss, float | int):
            return wrong(f"train_step returned {type(loss).__name__}; return the loss as a number (loss.item())",
                         f"train_step 返回了 {type(loss).__name__}；应以一个数返回损失（loss.item()）")
    if abs(losses[0] - ref_losses[0]) > 1e-4 * ref_losses[0]:
        return wrong(f"your loss is {losses[0]:.5f}, the reference step's {ref_losses[0]:.5f}: draw the noise first "
                     "(torch.randn, Gaussian), then t (torch.randint(0, 1000, ...)), both from the generator, noise "
                     "the batch with scheduler.add_noise and take the MSE against the noise",
                     f"你的损失是 {losses[0]:.5f}，参考步骤是 {ref_losses[0]:.5f}：先从 generator 取噪声"
                     "（torch.randn，高斯噪声），再取 t（torch.randint(0, 1000, ...)），用 scheduler.add_noise "
                     "加噪，再与噪声求 MSE")
    if torch.equal(weights[0], start):
        return wrong("the weights did not change: after loss.backward(), call optimizer.step()",
                     "权重没有变化：在 loss.backward() 之后调用 optimizer.step()")
    if not torch.allclose(weights[0], ref_weights[0], atol=1e-6):
        return wrong("after one step your weights differ from the reference's: one loss.backward() and one "
                     "optimizer.step() per batch",
                     "一步之后你的权重与参考不同：每个批次一次 loss.backward()、一次 optimizer.step()")
    if not torch.allclose(weights[1], ref_weights[1], atol=1e-6):
        return wrong("the first step is right, the second is not: the gradients of step 1 were added to step 2's. "
                     "Zero them every step (optimizer.zero_grad())",
                     "第一步对了，第二步不对：第 1 步的梯度叠加到了第 2 步上。每一步都要清零梯度"
                     "（optimizer.zero_grad()）")
    return right("two steps from the same start give the reference's losses and weights",
                 "从同一起点走两步，损失和权重都与参考相同")


class _TooManyCalls(Exception):
    """Raised by ``_Counting`` at the call after its limit: the loop runs far more steps than it was asked for."""


class _Counting(torch.nn.Module):
    """A U-Net wrapper that counts its calls (how many steps a sampling loop ran); past ``limit`` calls it stops
    the loop (``_TooManyCalls``) instead of waiting for all of them."""

    def __init__(self, unet: UNet2DModel, limit: int | None = None):
        super().__init__()
        self.unet, self.calls, self.config, self.limit = unet, 0, unet.config, limit

    @property
    def device(self) -> torch.device:
        """The wrapped U-Net's device (what ``model.device`` gives a learner)."""
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        """The wrapped U-Net's dtype."""
        return self.unet.dtype

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.limit is not None and self.calls > self.limit:
            raise _TooManyCalls
        return self.unet(*args, **kwargs)


@checked
def check_sample(sample: Callable) -> Verdict:
    """``sample(model, scheduler, n, steps, generator)`` must give ``DDPMPipeline``'s images, (n, 3, H, W) in
    [0, 1], for the same generator."""
    unet, n, steps = _tiny_unet(), 4, 8
    model = _Counting(unet, limit=4 * steps)
    try:
        with torch.no_grad():
            mine = sample(model, _scheduler(), n, steps, torch.Generator().manual_seed(0))
    except _TooManyCalls:
        return wrong(f"your loop called the model more than {model.limit} times for {steps} steps (without "
                     "set_timesteps, scheduler.timesteps holds all 1000 training timesteps): call "
                     "scheduler.set_timesteps(steps) first, then loop over scheduler.timesteps",
                     f"{steps} 步的循环调用模型超过了 {model.limit} 次（不调用 set_timesteps，scheduler.timesteps 里是"
                     "全部 1000 个训练时间步）：先调用 scheduler.set_timesteps(steps)，再遍历 scheduler.timesteps")
    pipeline = DDPMPipeline(unet=unet, scheduler=_scheduler())
    pipeline.set_progress_bar_config(disable=True)
    ref = pipeline(batch_size=n, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                   output_type="np").images
    ref = torch.from_numpy(ref).permute(0, 3, 1, 2)
    if not isinstance(mine, torch.Tensor) or mine.shape != ref.shape:
        shape = tuple(mine.shape) if isinstance(mine, torch.Tensor) else type(mine).__name__
        return wrong(f"sample returned {shape}; return a tensor (n, 3, H, W) = {tuple(ref.shape)}, with H and W from "
                     "model.config.sample_size",
                     f"sample 返回了 {shape}；应返回形状为 (n, 3, H, W) = {tuple(ref.shape)} 的张量，"
                     "H、W 取 model.config.sample_size")
    if model.calls != steps:
        return wrong(f"your loop called the model {model.calls} times for {steps} steps: call "
                     "scheduler.set_timesteps(steps) first, then loop over scheduler.timesteps",
                     f"{steps} 步的循环却调用了模型 {model.calls} 次：先调用 scheduler.set_timesteps(steps)，"
                     "再遍历 scheduler.timesteps")
    mine = mine.detach().cpu().float()
    if torch.allclose(mine, ref, atol=1e-4):
        return right(f"your loop gives DDPMPipeline's {n} images to within 1e-4, in {steps} model calls",
                     f"你的循环给出的 {n} 张图与 DDPMPipeline 的相差不到 1e-4，共调用模型 {steps} 次")
    if torch.allclose(mine.clamp(-1, 1), ref * 2 - 1, atol=1e-4):
        return wrong("your images are in [-1, 1]; the pipeline returns them in [0, 1]: (x / 2 + 0.5).clamp(0, 1)",
                     "你的图像在 [-1, 1] 之间；管线返回的是 [0, 1]：(x / 2 + 0.5).clamp(0, 1)")
    with torch.no_grad():
        again = sample(_Counting(unet), _scheduler(), n, steps, torch.Generator().manual_seed(0))
    if not torch.allclose(again.detach().cpu().float(), mine, atol=1e-6):
        return wrong("two runs with the same seed differ: some random numbers do not come from the generator. Pass it "
                     "to torch.randn and to scheduler.step(..., generator=generator) (the DDPM step adds fresh noise)",
                     "同一种子跑两次结果不同：有些随机数不是从 generator 取的。把它传给 torch.randn，也传给 "
                     "scheduler.step(..., generator=generator)（DDPM 的每一步都会加入新的噪声）")
    gap = float((mine - ref).abs().max())
    return wrong(f"your images differ from DDPMPipeline's by up to {gap:.3g}: start from torch.randn((n, 3, H, W), "
                 "generator=generator), and at each t take model(x, t).sample and scheduler.step(...).prev_sample",
                 f"你的图像与 DDPMPipeline 的最多相差 {gap:.3g}：从 torch.randn((n, 3, H, W), generator=generator) "
                 "出发，每个 t 取 model(x, t).sample，再取 scheduler.step(...).prev_sample")
