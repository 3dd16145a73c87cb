"""Chapter 4's exercises: the pipeline's sampling loop by hand, a save/load round trip, the DDIM swap."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from . import Verdict, checked, right, wrong


def tiny_pipeline() -> DDPMPipeline:
    """A 16-px DDPMPipeline with fixed random weights and chapter 3's scheduler: seconds to sample on a CPU."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")  # chapter 3's
    pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _pipeline_images(pipeline, seed: int, steps: int, n: int = 4, **options) -> np.ndarray:
    """``n`` images (N, H, W, 3) in [0, 1] from ``pipeline`` on a seeded CPU generator."""
    return pipeline(batch_size=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                    output_type="np", **options).images


@checked
def check_sampling_loop(sample: Callable) -> Verdict:
    """``sample(unet, scheduler, n, steps, generator)`` (images in [-1, 1]) must be ``DDPMPipeline``'s output."""
    pipeline = tiny_pipeline()
    expected = _pipeline_images(pipeline, 0, 10)
    with torch.no_grad():
        mine = sample(pipeline.unet, DDPMScheduler.from_config(pipeline.scheduler.config), 4, 10,
                      torch.Generator().manual_seed(0))
    if not isinstance(mine, torch.Tensor) or tuple(mine.shape) != (4, 3, 16, 16):
        shape = tuple(mine.shape) if isinstance(mine, torch.Tensor) else type(mine).__name__
        return wrong(f"sample returned {shape}; it should return a (4, 3, 16, 16) tensor here (n images, C, H, W)",
                     f"sample 返回了 {shape}；这里应返回形状为 (4, 3, 16, 16) 的张量（n 张图，C, H, W）")
    mine = ((mine.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    gap = float(np.abs(mine - expected).max())
    if gap > 1e-4:
        return wrong(f"your images differ from DDPMPipeline's on the same seed by up to {gap:.3g}: draw the starting "
                     "noise with torch.randn(shape, generator=generator), call scheduler.set_timesteps(steps), and "
                     "pass the same generator to every scheduler.step",
                     f"同一种子下你的图像与 DDPMPipeline 的最多相差 {gap:.3g}："
                     "用 torch.randn(shape, generator=generator) 取起始噪声，调用 scheduler.set_timesteps(steps)，"
                     "并把同一个 generator 传给每次 scheduler.step")
    return right("your loop gives DDPMPipeline's images on the same seed (10 steps, 4 images)",
                 "同一种子下你的循环给出与 DDPMPipeline 相同的图像（10 步，4 张图）")


@checked
def check_round_trip(round_trip: Callable) -> Verdict:
    """``round_trip(pipeline, folder)`` must save to ``folder`` as safetensors and return the pipeline loaded back."""
    pipeline = tiny_pipeline()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "saved"
        loaded = round_trip(pipeline, folder)
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        if "model_index.json" not in files:
            return wrong(f"{folder.name}/model_index.json was not written: save with pipeline.save_pretrained(folder)",
                         f"没有写出 {folder.name}/model_index.json：用 pipeline.save_pretrained(folder) 保存")
        if "unet/diffusion_pytorch_model.safetensors" not in files:
            return wrong(f"no unet/diffusion_pytorch_model.safetensors among {sorted(files)}: save as safetensors",
                         f"{sorted(files)} 中没有 unet/diffusion_pytorch_model.safetensors：请用 safetensors 格式保存")
        if not isinstance(loaded, DDPMPipeline) or loaded is pipeline:
            return wrong("round_trip should return a new pipeline read from the folder (DDPMPipeline.from_pretrained)",
                         "round_trip 应返回从文件夹读回的新管线（DDPMPipeline.from_pretrained）")
        loaded.set_progress_bar_config(disable=True)
        gap = float(np.abs(_pipeline_images(loaded, 0, 5) - _pipeline_images(pipeline, 0, 5)).max())
    if gap > 1e-6:
        return wrong(f"the loaded pipeline's images differ from the original's on the same seed by up to {gap:.3g}",
                     f"同一种子下读回的管线与原管线的图像最多相差 {gap:.3g}")
    return right("saved as safetensors and loaded back: the same images on the same seed",
                 "以 safetensors 保存并读回：同一种子下图像相同")


@checked
def check_ddim_pipeline(to_ddim: Callable) -> Verdict:
    """``to_ddim(pipeline)`` must return a ``DDIMPipeline`` on the same U-Net and the same noise schedule."""
    pipeline = tiny_pipeline()
    ddim = to_ddim(pipeline)
    if not isinstance(ddim, DDIMPipeline):
        return wrong(f"to_ddim returned {type(ddim).__name__}; return a DDIMPipeline(unet=..., scheduler=...)",
                     f"to_ddim 返回了 {type(ddim).__name__}；应返回 DDIMPipeline(unet=..., scheduler=...)")
    if not isinstance(ddim.scheduler, DDIMScheduler):
        return wrong(f"its scheduler is {type(ddim.scheduler).__name__}; it should be a DDIMScheduler",
                     f"它的调度器是 {type(ddim.scheduler).__name__}；应为 DDIMScheduler")
    if ddim.unet is not pipeline.unet:
        return wrong("it has another U-Net: reuse pipeline.unet (no retraining)",
                     "它用了另一个 U-Net：请复用 pipeline.unet（无需重新训练）")
    if not torch.allclose(ddim.scheduler.alphas_cumprod, pipeline.scheduler.alphas_cumprod):
        return wrong("its noise schedule is not the trained model's (a default DDIMScheduler() is linear): build it "
                     "with DDIMScheduler.from_config(pipeline.scheduler.config)",
                     "它的噪声调度不是训练时的（默认的 DDIMScheduler() 是线性的）：用 "
                     "DDIMScheduler.from_config(pipeline.scheduler.config) 构建")
    if ddim.scheduler.config.prediction_type != pipeline.scheduler.config.prediction_type:
        return wrong(f"it reads the model's output as {ddim.scheduler.config.prediction_type!r}, the model predicts "
                     f"{pipeline.scheduler.config.prediction_type!r}: build it from the pipeline's scheduler config",
                     f"它把模型输出当作 {ddim.scheduler.config.prediction_type!r}，而模型预测的是 "
                     f"{pipeline.scheduler.config.prediction_type!r}：请由管线调度器的 config 构建")
    ddim.set_progress_bar_config(disable=True)
    chapters = DDPMPipeline(unet=pipeline.unet, scheduler=DDIMScheduler.from_config(pipeline.scheduler.config))
    chapters.set_progress_bar_config(disable=True)
    at_0, at_1 = (_pipeline_images(ddim, 0, 5, eta=eta) for eta in (0.0, 1.0))
    if not np.allclose(at_0, _pipeline_images(chapters, 0, 5), atol=1e-5):
        return wrong("at eta=0 it should draw the chapter's DDIM images (DDPMPipeline with a DDIMScheduler) from the "
                     "same seed",
                     "eta=0 时它应与本章的 DDIM（换上 DDIMScheduler 的 DDPMPipeline）在同一种子下画出相同图像")
    changed = np.abs(at_1 - at_0).mean()
    return right(f"at eta = 0 it draws the chapter's DDIM images; at eta = 1 each step adds fresh noise, and the "
                 f"images move by {changed:.2f} on average", f"eta = 0 时画出的就是本章的 DDIM 图像；eta = 1 时每一步都"
                 f"加入新的噪声，图像平均变化 {changed:.2f}")
