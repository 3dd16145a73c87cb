"""Chapter 5's exercises: gradient accumulation, the effective batch size, where a resume starts, the newest
checkpoint."""

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


RESUME_CASES = ((5, 2, 8), (160, 1, 16), (100, 1, 16), (7, 4, 10), (3, 1, 16), (0, 1, 16))


@checked
def check_resume_position(resume_position: Callable) -> Verdict:
    """``resume_position(step, accumulation_steps, batches_per_epoch)``: the epoch to resume in, batches to skip."""
    for step, k, per_epoch in RESUME_CASES:
        got, want = resume_position(step, k, per_epoch), divmod(step * k, per_epoch)
        case = f"update {step}, {k} batch(es) per update, {per_epoch} batches per epoch"
        if not isinstance(got, tuple | list) or len(got) != 2:
            return wrong(f"{case}: {got!r}; return two numbers, (epoch, batches to skip)",
                         f"{case}：{got!r}；请返回两个数：(轮次, 要跳过的批次数)")
        got = tuple(int(n) for n in got)
        if got == want:
            continue
        if got == divmod(step, per_epoch):
            return wrong(f"{case}: {got}, expected {want}; each update used {k} batches, so {step} updates used "
                         f"{step * k} batches", f"{case}：{got}，应为 {want}；每次更新用了 {k} 个批次，"
                         f"所以 {step} 次更新用了 {step * k} 个批次")
        if got == (want[0], 0):
            return wrong(f"{case}: {got}, expected {want}; without skipping, the {want[1]} batches already used "
                         f"in epoch {want[0]} would be trained on twice",
                         f"{case}：{got}，应为 {want}；不跳过的话，第 {want[0]} 轮里已用过的 {want[1]} 个批次"
                         "会被训练两次")
        return wrong(f"{case}: {got}, expected {want} (epoch, batches to skip)",
                     f"{case}：{got}，应为 {want}（轮次，要跳过的批次数）")
    return right("divmod(step x accumulation steps, batches per epoch): the epoch to resume in and the batches "
                 "of it already used, what the script computes before skip_first_batches",
                 "divmod(更新步数 × 累加步数, 每轮批次数)：从哪一轮继续、该轮已用过几个批次，"
                 "正是脚本在 skip_first_batches 之前算的")


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
