"""Chapter 6's exercises: the DDIM step (eta = 0, then with eta), which weights a fine-tune moved, LoRA by hand.

Each check compares the learner's code with the library that does the same: ``DDIMScheduler.step`` for the
steps, ``peft`` for the adapters' size and their merge; the weight changes are recomputed from the two U-Nets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler

from . import Verdict, checked, right, wrong

KINDS = ("epsilon", "v_prediction")


def _fixed(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _scheduler(kind: str) -> DDIMScheduler:
    """The digit model's cosine schedule with 10 DDIM steps, no clipping (a learner's step does not clip)."""
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=kind, clip_sample=False)
    scheduler.set_timesteps(10)
    return scheduler


def _gap(mine, theirs: torch.Tensor) -> float | str:
    """The largest difference, or a sentence saying why there is none to measure."""
    if not isinstance(mine, torch.Tensor):
        return f"a {type(mine).__name__}, not a tensor"
    if mine.shape != theirs.shape:
        return f"shape {tuple(mine.shape)}, expected {tuple(theirs.shape)}"
    return float((mine.float() - theirs).abs().max())


def _steps(scheduler: DDIMScheduler):
    """(t, t') pairs: a middle step and the last one (t' = -1: abar = 1, the clean image)."""
    ts = scheduler.timesteps.tolist()
    return [(ts[3], ts[4]), (ts[-1], -1)]


def _abar(scheduler: DDIMScheduler, t: int) -> torch.Tensor:
    return scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod


@checked
def check_ddim_step(ddim_step: Callable) -> Verdict:
    """``ddim_step(model_output, x, abar_t, abar_next, prediction_type)`` against ``DDIMScheduler.step`` (eta 0)."""
    x, out = _fixed(0, 2, 1, 8, 8), _fixed(1, 2, 1, 8, 8)
    for kind in KINDS:
        scheduler = _scheduler(kind)
        for t, t_next in _steps(scheduler):
            expected = scheduler.step(out, t, x).prev_sample
            mine = ddim_step(out, x, _abar(scheduler, t), _abar(scheduler, t_next), kind)
            gap = _gap(mine, expected)
            if isinstance(gap, str) or gap > 1e-4:
                told = gap if isinstance(gap, str) else f"differs from DDIMScheduler.step by up to {gap:.3g}"
                return wrong(f"prediction_type={kind!r}, step t = {t} -> {t_next}: your x_t' is {told}"
                             + (" (for v: x̂₀ = √ᾱ_t·x − √(1−ᾱ_t)·v, ε̂ = √ᾱ_t·v + √(1−ᾱ_t)·x)"
                                if kind == "v_prediction" else " (x̂₀ = (x − √(1−ᾱ_t)·ε̂) / √ᾱ_t)"),
                             f"prediction_type={kind!r}，第 t = {t} → {t_next} 步：你的 x_t' {told}")
    return right("your DDIM step equals DDIMScheduler.step (eta = 0) for ε and v prediction, at a middle step "
                 "and at the last one",
                 "你的 DDIM 步与 DDIMScheduler.step（eta = 0）一致：ε 和 v 两种预测、中间一步和最后一步都对")


@checked
def check_ddim_step_eta(ddim_step_eta: Callable) -> Verdict:
    """``ddim_step_eta(eps, x, abar_t, abar_next, eta, noise)`` against ``DDIMScheduler.step`` with that noise."""
    scheduler = _scheduler("epsilon")
    x, eps, noise = _fixed(0, 2, 1, 8, 8), _fixed(1, 2, 1, 8, 8), _fixed(2, 2, 1, 8, 8)
    t, t_next = _steps(scheduler)[0]
    for eta in (0.0, 0.5, 1.0):
        expected = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        mine = ddim_step_eta(eps, x, _abar(scheduler, t), _abar(scheduler, t_next), eta, noise)
        gap = _gap(mine, expected)
        if isinstance(gap, str) or gap > 1e-4:
            told = gap if isinstance(gap, str) else f"differs from DDIMScheduler.step by up to {gap:.3g}"
            hint = (" — at eta = 0 it must be the deterministic step" if eta == 0 else
                    " — σ = eta·√((1−ᾱ_t')/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_t'), and the ε̂ term shrinks to √(1−ᾱ_t'−σ²)")
            return wrong(f"eta = {eta}, step t = {t} -> {t_next}: your x_t' is {told}{hint}",
                         f"eta = {eta}，第 t = {t} → {t_next} 步：你的 x_t' {told}")
    return right("your step equals DDIMScheduler.step at eta = 0, 0.5 and 1 on the same noise",
                 "你的一步在 eta = 0、0.5、1 时与 DDIMScheduler.step（同样的噪声）一致")


def _relative_changes(base: torch.nn.Module, tuned: torch.nn.Module) -> dict[str, float]:
    """For each top-level part with weights: ||W_tuned - W|| / ||W|| over all its weights."""
    changes = {}
    for (name, a), (_, b) in zip(base.named_children(), tuned.named_children(), strict=True):
        pairs = [(x.detach().float(), y.detach().float()) for x, y in zip(a.parameters(), b.parameters(), strict=True)]
        if pairs:
            moved = sum(float(((y - x) ** 2).sum()) for x, y in pairs) ** 0.5
            changes[name] = moved / sum(float((x**2).sum()) for x, _ in pairs) ** 0.5
    return changes


@checked
def check_weight_changes(relative_change: Callable, tuned: torch.nn.Module) -> Verdict:
    """``relative_change(base, tuned)`` (a dict: part -> ||ΔW|| / ||W||) against the shipped butterflies-32 U-Net."""
    from .. import pretrained

    base = pretrained.load("butterflies-32").unet.to(next(tuned.parameters()).device)
    expected = _relative_changes(base, tuned)
    mine = relative_change(base, tuned)
    if not isinstance(mine, dict) or set(mine) != set(expected):
        got = sorted(mine) if isinstance(mine, dict) else type(mine).__name__
        return wrong(f"expected a dict with one entry per part of the U-Net, {sorted(expected)}; got {got}",
                     f"应返回一个字典，U-Net 的每个部分一项：{sorted(expected)}；得到 {got}")
    for name, value in expected.items():
        if abs(float(mine[name]) - value) > 1e-3 * value + 1e-9:
            return wrong(f"{name}: your change is {float(mine[name]):.3g}, expected {value:.3g} (the relative change "
                         "||W_tuned − W|| / ||W||, over all the part's weights together)",
                         f"{name}：你的变化量为 {float(mine[name]):.3g}，应为 {value:.3g}"
                         "（相对变化 ||W_tuned − W|| / ||W||，该部分的全部权重合在一起算）")
    most = max(expected, key=expected.get)
    return right(f"your changes match; {most} moved most ({expected[most]:.2%} of its weights' size)",
                 f"你的变化量正确；变化最大的是 {most}（其权重大小的 {expected[most]:.2%}）")


@checked
def check_lora_parameters(lora_parameters: Callable) -> Verdict:
    """``lora_parameters(unet, rank)`` against the trainable parameters peft adds (``add_lora``) at ranks 2, 8, 32."""
    from .. import pretrained
    from ..lora import add_lora

    base = pretrained.load("butterflies-32").unet
    for rank in (2, 8, 32):
        mine = lora_parameters(copy.deepcopy(base), rank)
        unet = copy.deepcopy(base)  # add_lora changes the U-Net it is given
        add_lora(unet, rank=rank)
        expected = sum(p.numel() for p in unet.parameters() if p.requires_grad)
        if mine != expected:
            return wrong(f"rank {rank}: you counted {mine!r} trainable parameters, peft trains {expected:,} (a k × k "
                         "convolution's A is itself k × k: r·in·k·k, its B is 1 × 1: out·r)",
                         f"秩 {rank}：你数出 {mine!r} 个可训练参数，peft 训练 {expected:,} 个"
                         "（k × k 卷积的 A 也是 k × k：r·in·k·k；B 是 1 × 1：out·r）")
    return right("your count equals peft's at ranks 2, 8 and 32: the adapters grow linearly with the rank",
                 "你数的参数量在秩 2、8、32 时都与 peft 一致：适配器的参数量随秩线性增长")


@checked
def check_merge_lora(merge_lora: Callable) -> Verdict:
    """``merge_lora(W, A, B, alpha, r)`` against the weight ``peft``'s ``merge_and_unload`` writes."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(12, 10))
    rank, alpha = 4, 8  # alpha != rank, so a forgotten scale alpha / r shows
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # B starts at zero; a trained one is not
    W, A, B = (m.weight.detach().clone() for m in (layer.base_layer, layer.lora_A["default"], layer.lora_B["default"]))
    expected = model.merge_and_unload()[0].weight.detach()
    mine = merge_lora(W, A, B, alpha, rank)
    gap = _gap(mine, expected)
    if isinstance(gap, str):
        return wrong(f"your merged weight is {gap} (W is out × in, A is r × in, B is out × r)",
                     f"你合并后的权重：{gap}（W 为 out × in，A 为 r × in，B 为 out × r）")
    if gap > 1e-5:
        hint = " — did you leave out the scale alpha / r?" if float((mine - (W + B @ A)).abs().max()) < 1e-5 else ""
        return wrong(f"your merged weight differs from peft's by up to {gap:.3g}{hint}",
                     f"你合并后的权重与 peft 的相差最多 {gap:.3g}" + ("：是否漏掉了缩放 alpha / r？" if hint else ""))
    return right("your merged weight equals peft's merge_and_unload: W + (alpha / r)·B·A",
                 "你合并后的权重与 peft 的 merge_and_unload 一致：W + (alpha / r)·B·A")
