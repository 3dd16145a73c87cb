"""Chapter 5's exercises: gradient accumulation, the effective batch size, the min-SNR weight, the newest checkpoint."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from . import Verdict, checked, right, wrong


def _small_model() -> torch.nn.Module:
    """A two-layer network: big enough to show a wrong gradient, small enough to check in milliseconds."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The mean loss of a batch (a mean, like the diffusion loss, so micro-batches must be scaled by 1/k)."""
    return (model(x) ** 2).mean()


@checked
def check_accumulation(accumulated_grads: Callable) -> Verdict:
    """``accumulated_grads(model, loss_fn, images, k)`` must give one big batch's gradient from k micro-batches."""
    model, images = _small_model(), torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    model.zero_grad()
    _loss(model, images).backward()
    big = [p.grad.clone() for p in model.parameters()]
    for k in (1, 3, 4):
        model.zero_grad(set_to_none=True)
        got = [torch.as_tensor(g) for g in accumulated_grads(model, _loss, images, k)]
        if len(got) != len(big) or any(g.shape != b.shape for g, b in zip(got, big, strict=False)):
            return wrong(f"k={k}: {len(got)} gradients of shapes {[tuple(g.shape) for g in got]}, expected one per "
                         f"parameter, shapes {[tuple(b.shape) for b in big]}",
                         f"k={k}：得到 {len(got)} 个梯度，形状 {[tuple(g.shape) for g in got]}；应为每个参数一个，"
                         f"形状 {[tuple(b.shape) for b in big]}")
        if all(torch.allclose(g, b, atol=1e-6) for g, b in zip(got, big, strict=True)):
            continue
        if all(torch.allclose(g, k * b, atol=1e-6) for g, b in zip(got, big, strict=True)):
            return wrong(f"k={k}: your gradient is {k} times the big batch's: divide each micro-batch's loss by k "
                         "(each loss is a mean over a k-times smaller batch)",
                         f"k={k}：你的梯度是大批次的 {k} 倍：把每个小批次的损失除以 k"
                         "（每个损失都是 k 倍更小批次上的均值）")
        ratio = float(got[-1].norm() / big[-1].norm())
        return wrong(f"k={k}: your gradient differs from one big batch's (its size is {ratio:.2f} times it): sum "
                     "loss / k over the k chunks of images, backward on each, without zeroing in between",
                     f"k={k}：你的梯度与一个大批次的不同（大小是它的 {ratio:.2f} 倍）：对 images 的 k 块分别求 "
                     "loss / k 并各自 backward，中间不要清零梯度")
    return right("k micro-batches, each loss divided by k, give exactly one big batch's gradient (k = 1, 3, 4)",
                 "k 个小批次、每个损失除以 k，得到的梯度与一个大批次的完全相同（k = 1、3、4）")


@checked
def check_effective_batch_size(effective_batch_size: Callable) -> Verdict:
    """``effective_batch_size(per_device, accumulation_steps, processes)``: the images behind one update."""
    for per, steps, processes in ((16, 1, 1), (16, 4, 1), (8, 2, 4), (64, 1, 8), (4, 8, 2)):
        got, want = effective_batch_size(per, steps, processes), per * steps * processes
        if got == want:
            continue
        case = f"--train_batch_size {per}, --gradient_accumulation_steps {steps}, {processes} process(es)"
        if got == per * steps:
            return wrong(f"{case}: {got}; each of the {processes} processes takes its own batch, and their gradients "
                         "are averaged into the one update", f"{case}：{got}；{processes} 个进程各取一个批次，"
                         "它们的梯度平均后合成一次更新")
        if got == per * processes:
            return wrong(f"{case}: {got}; the {steps} accumulated batches also go into each update",
                         f"{case}：{got}；累加的 {steps} 个批次也都进入每次更新")
        return wrong(f"{case}: {got}, expected {want}", f"{case}：{got}，应为 {want}")
    return right("per-device batch x accumulation steps x processes: the images behind every optimizer update",
                 "每设备批次 × 累加步数 × 进程数：每次优化器更新背后的图像数")


@checked
def check_min_snr_weight(min_snr_weight: Callable) -> Verdict:
    """``min_snr_weight(scheduler, t, gamma)`` for an epsilon loss, against ``diffusers.training_utils.compute_snr``."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    t, gamma = torch.tensor([0, 20, 100, 300, 600, 999]), 5.0
    snr = compute_snr(scheduler, t)
    want = snr.clamp(max=gamma) / snr
    got = torch.as_tensor(min_snr_weight(scheduler, t, gamma), dtype=torch.float32)
    if got.shape != want.shape:
        return wrong(f"shape {tuple(got.shape)}, expected {tuple(want.shape)} (one weight per timestep)",
                     f"形状 {tuple(got.shape)}，应为 {tuple(want.shape)}（每个时间步一个权重）")
    if torch.allclose(got, want, rtol=1e-4):
        return right(f"min(SNR, {gamma:g}) / SNR, as diffusers' compute_snr gives it: {want[1]:.3f} at t = 20 (the "
                     f"easy, nearly clean steps count less), 1 from t = 300 on",
                     f"min(SNR, {gamma:g}) / SNR，与 diffusers 的 compute_snr 一致：t = 20 时为 {want[1]:.3f}"
                     "（容易的、几乎无噪声的步权重更小），从 t = 300 起为 1")
    if torch.allclose(got, snr.clamp(max=gamma), rtol=1e-4):
        return wrong("you returned min(SNR, gamma): the weight of an x0 loss; an epsilon loss already carries a "
                     "factor SNR, so divide by it", "你返回的是 min(SNR, gamma)：这是 x0 损失的权重；"
                     "ε 损失本身已带有 SNR 因子，所以要再除以 SNR")
    if torch.allclose(got, snr.clamp(max=gamma) / (snr + 1), rtol=1e-4):
        return wrong("that is the weight of a v-prediction loss (divided by SNR + 1); this scheduler predicts "
                     "epsilon: divide by SNR", "这是 v 预测损失的权重（除以 SNR + 1）；此调度器预测 ε：应除以 SNR")
    i = int((~torch.isclose(got, want, rtol=1e-4)).nonzero()[0])
    return wrong(f"at t = {int(t[i])}: {got[i]:.4g}, expected {want[i]:.4g} (SNR there is {snr[i]:.4g}; "
                 "SNR = alphas_cumprod / (1 - alphas_cumprod))",
                 f"t = {int(t[i])} 时：{got[i]:.4g}，应为 {want[i]:.4g}（该处 SNR 为 {snr[i]:.4g}；"
                 "SNR = alphas_cumprod / (1 - alphas_cumprod)）")


CASES = (["checkpoint-8", "checkpoint-12", "checkpoint-4", "logs", "samples"],
         ["checkpoint-500", ".checkpoint-1000.tmp", "checkpoint-250"],
         ["logs", "samples"], [])


@checked
def check_newest_checkpoint(newest_checkpoint: Callable) -> Verdict:
    """``newest_checkpoint(names)`` must pick what ``--resume_from_checkpoint latest`` resumes from."""
    from ..runs import list_checkpoints

    for names in CASES:
        with tempfile.TemporaryDirectory() as folder:
            for name in names:
                (Path(folder) / name).mkdir()
            found = list_checkpoints(Path(folder))
            want = found[-1].name if found else None
        got = newest_checkpoint(list(names))
        if got == want:
            continue
        if got == max((n for n in names if n.startswith("checkpoint-")), default=None):
            return wrong(f"{names}: {got!r} is the last in text order; compare the step numbers ({want!r} is newer)",
                         f"{names}：{got!r} 只是按文本排序的最后一个；请比较步数（{want!r} 更新）")
        if isinstance(got, str) and got.startswith("."):
            return wrong(f"{names}: {got!r} is a save that never finished (a temporary folder); skip it",
                         f"{names}：{got!r} 是没写完的保存（临时文件夹）；请跳过它")
        return wrong(f"{names}: {got!r}, expected {want!r}", f"{names}：{got!r}，应为 {want!r}")
    return right("the highest step among complete checkpoint-<step> folders, None when there is none: what "
                 "--resume_from_checkpoint latest loads", "完整的 checkpoint-<step> 文件夹中步数最大的那个，没有时为 "
                 "None：正是 --resume_from_checkpoint latest 加载的")
