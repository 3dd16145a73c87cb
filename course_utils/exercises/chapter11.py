"""Chapter 11's checks: the silhouette IoU by hand; the ControlNet's residuals, scaled, into the U-Net."""

from __future__ import annotations

import torch

from . import Verdict, checked, right, wrong


@checked
def check_iou(iou) -> Verdict:
    """``iou(a, b)``: intersection over union of two boolean (H, W) masks, as a float."""
    g = torch.Generator().manual_seed(11)
    for _ in range(5):
        a, b = torch.rand(32, 32, generator=g) > 0.6, torch.rand(32, 32, generator=g) > 0.4
        want = float((a & b).sum() / (a | b).sum())
        got = float(iou(a, b))
        if abs(got - want) > 1e-6:
            share = float((a & b).sum() / a.sum())
            hint = (" — that is the intersection over the first mask alone; divide by the union (a | b)"
                    if abs(got - share) < 1e-6 else "")
            hint_zh = "——这是交集除以第一个掩码；应除以并集 (a | b)" if hint else ""
            return wrong(f"iou gave {got:.4f} for two random masks, expected {want:.4f}{hint}",
                         f"iou 对两个随机掩码得到 {got:.4f}，应为 {want:.4f}{hint_zh}")
    same = torch.rand(32, 32, generator=g) > 0.5
    if abs(float(iou(same, same)) - 1) > 1e-6:
        return wrong("a mask against itself should give 1", "掩码与自身的交并比应为 1")
    return right("iou matches |a ∩ b| / |a ∪ b| on random masks, and a mask against itself gives 1",
                 "iou 在随机掩码上与 |a ∩ b| / |a ∪ b| 一致，掩码与自身得 1")


@checked
def check_controlled_noise(controlled_noise, pipeline) -> Verdict:
    """``controlled_noise(controlnet, unet, x, t, text, control, scale)``: the U-Net's noise prediction with the
    ControlNet's residuals multiplied by ``scale``; compared with diffusers' ``conditioning_scale``."""
    controlnet, unet = pipeline.controlnet, pipeline.unet
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 8, 8, generator=g)
    text = torch.randn(2, 16, unet.config.cross_attention_dim, generator=g)
    control = (torch.rand(2, 3, 32, 32, generator=g) > 0.5).float()
    t = torch.tensor([500, 100])
    for scale in (1.0, 0.5, 0.0):
        with torch.no_grad():
            down, mid = controlnet(x, t, encoder_hidden_states=text, controlnet_cond=control,
                                   conditioning_scale=scale, return_dict=False)
            want = unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample
            got = controlled_noise(controlnet, unet, x, t, text, control, scale)
        if tuple(got.shape) != tuple(want.shape):
            return wrong(f"the prediction has shape {tuple(got.shape)}, expected {tuple(want.shape)}",
                         f"预测的形状是 {tuple(got.shape)}，应为 {tuple(want.shape)}")
        if not torch.allclose(got, want, atol=1e-4):
            return wrong(f"at scale {scale} the prediction differs from diffusers' by up to "
                         f"{(got - want).abs().max():.4f}: multiply every down residual and the mid residual by scale",
                         f"在强度 {scale} 下与 diffusers 的结果最多相差 {(got - want).abs().max():.4f}："
                         "每个下采样残差和中间残差都要乘以 scale")
    return right("your prediction equals diffusers' with conditioning_scale 1, 0.5 and 0",
                 "你的预测在 conditioning_scale 为 1、0.5、0 时都与 diffusers 的一致")
