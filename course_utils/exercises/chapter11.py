"""Chapter 11's checks: the silhouette IoU by hand; the ControlNet's residuals, scaled, into the U-Net; a height
field peeled with straight steps."""

from __future__ import annotations

import torch

from . import Verdict, checked, right, wrong, wrong_shape


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


def _framed_controls(count: int = 6, margin: int = 4) -> torch.Tensor:
    """Silhouettes of a few posed butterflies the chapter never showed, with a black margin so none touches the
    frame (then how a map treats the image's edge does not matter)."""
    from ..controlnet import posed_butterflies

    _, controls = posed_butterflies(range(600_000, 600_000 + count))
    return torch.nn.functional.pad(controls, (margin,) * 4)


def _steps_to_background(inside: torch.Tensor, metric: str) -> torch.Tensor:
    """Each pixel's number of steps to the nearest background pixel (scipy's distance transform), per mask."""
    from scipy.ndimage import distance_transform_cdt

    return torch.stack([torch.from_numpy(distance_transform_cdt(m.numpy(), metric=metric)) for m in inside])


@checked
def check_straight_height(straight_height) -> Verdict:
    """``straight_height(controls)``: (N, 3, H, W) silhouettes -> (N, H, W) height fields peeled with straight steps
    only (a pixel and its four neighbours), each scaled to [0, 1]; compared with scipy's taxicab distance transform."""
    from ..controlnet import depth_maps

    controls = _framed_controls()
    inside = controls.mean(dim=1) > 0.5
    steps = _steps_to_background(inside, "taxicab")
    want = steps.float() / steps.amax(dim=(1, 2), keepdim=True).float()
    got = straight_height(controls.clone())
    if (off := wrong_shape(got, want, "straight_height", "straight_height ")) is not None:
        return off
    got = got.detach().float().cpu()
    square = depth_maps(controls)
    if torch.allclose(got, want, atol=1e-6):
        farther = (steps > _steps_to_background(inside, "chessboard"))[inside].float().mean()
        return right(f"your maps are the taxicab distance to the background, scaled to [0, 1]: a diagonal step costs "
                     f"two, so the levels are diamonds, not squares (for {farther:.0%} of the butterflies' pixels the "
                     "background is more steps away than the chapter's maps count)",
                     f"你的高度图就是到背景的曼哈顿距离，缩放到 [0, 1]：斜着走一步算两步，所以等高线是菱形而不是方形"
                     f"（蝴蝶的像素中有 {farther:.0%} 离背景的步数比本章的高度图数得多）")
    if torch.allclose(got, square, atol=1e-6):
        return wrong("these are the chapter's maps, peeled with the 3×3 square, where a diagonal neighbour is one "
                     "step: erode with the plus shape instead (a pixel stays only if it and its four straight "
                     "neighbours are inside)",
                     "这是本章的高度图，用 3×3 方块剥层，斜邻居也算一步：请改用十字形腐蚀"
                     "（只有当像素本身和上下左右四个邻居都在形状内时，它才保留）")
    if not torch.equal(got > 0, inside):
        return wrong("a map must be 0 on the background and above 0 everywhere inside the silhouette",
                     "高度图在背景上应为 0，在轮廓内处处大于 0")
    if (got.amax(dim=(1, 2)) - 1).abs().max() > 1e-6:
        return wrong(f"the maps' largest values are {got.amax(dim=(1, 2)).tolist()}: divide each map by its own "
                     "largest value, so that each peaks at 1",
                     f"各高度图的最大值是 {got.amax(dim=(1, 2)).tolist()}：每张图要除以它自己的最大值，使峰值为 1")
    off = ((got - want).abs() > 1e-6).sum().item()
    return wrong(f"{off} pixels differ from the taxicab distance to the background (scaled to [0, 1])",
                 f"有 {off} 个像素与到背景的曼哈顿距离（缩放到 [0, 1]）不同")
