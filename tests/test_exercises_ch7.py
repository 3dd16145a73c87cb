"""Chapter 7's exercise checks: each reference solution passes, typical wrong answers fail with the intended message."""

import torch

from course_utils import metrics
from course_utils.data import WING_COLOURS
from course_utils.exercises import TODO
from course_utils.exercises.chapter7 import check_breaking_scale, check_cfg_combine, check_ddim_step, check_wing_loss

TARGET = torch.tensor(WING_COLOURS["blue"]).view(1, 3, 1, 1) / 255


def stub(*args):
    raise NotImplementedError(TODO)


def both(verdict, en: str, zh: str) -> None:
    """The verdict is wrong and names what is off in both languages."""
    assert verdict.status == "wrong" and en in verdict.en and zh in verdict.zh, verdict


def test_cfg_combine():
    assert check_cfg_combine(lambda u, c, s: u + s * (c - u)).status == "right"
    both(check_cfg_combine(lambda u, c, s: u + s * (u - c)), "wrong way", "方向反了")
    both(check_cfg_combine(lambda u, c, s: c + s * (c - u)), "the paper's w form", "论文的 w 写法")
    both(check_cfg_combine(lambda u, c, s: u + s * c), "off diffusers' ClassifierFreeGuidance", "最多相差")
    both(check_cfg_combine(lambda u, c, s: (u + s * (c - u)).mean()), "expected a tensor of shape", "应为形状")
    assert check_cfg_combine(stub).status == "not done"


def wing_loss(images):
    mask = metrics.butterfly_mask(images.detach()).unsqueeze(1).float()
    distance = (images - TARGET.to(images.device)).abs() * mask
    return distance.sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3))).clamp(min=1)


def test_wing_loss():
    assert check_wing_loss(wing_loss, TARGET).status == "right"
    whole_image = lambda images: (images - TARGET).abs().mean(dim=(1, 2, 3))  # noqa: E731 - the chapter's loss
    both(check_wing_loss(whole_image, TARGET), "not zero on the background", "背景上的梯度不为零")
    both(check_wing_loss(lambda images: 1 - wing_loss(images), TARGET), "should score lower", "应更低")
    both(check_wing_loss(lambda images: wing_loss(images).mean(), TARGET), "one loss per image", "每张图像返回一个损失")
    both(check_wing_loss(lambda images: wing_loss(images).detach(), TARGET), "differentiably", "不可微")
    assert check_wing_loss(stub, TARGET).status == "not done"


def test_breaking_scale():
    shares = {1: 0.97, 2: 0.83, 3: 0.1, 5: 0.0}
    assert check_breaking_scale(2, shares).status == "right"
    assert check_breaking_scale(0, {1: 0.5, 3: 0.1}).status == "right"
    both(check_breaking_scale(3, shares), "only 10%", "只有 10%")
    both(check_breaking_scale(1, shares), "a higher scale still holds up", "更高的引导强度仍然达标")
    both(check_breaking_scale(4, shares), "not one of the swept scales", "不是扫描过的引导强度之一")
    assert check_breaking_scale(None, shares).status == "not done"


def ddim_step_clipped(v, x_t, a_t, a_prev):
    x0 = (a_t.sqrt() * x_t - (1 - a_t).sqrt() * v).clamp(-1, 1)
    eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def test_ddim_step():
    assert check_ddim_step(ddim_step_clipped).status == "right"

    def keeps_the_noise(v, x_t, a_t, a_prev):  # diffusers' default: x0 clipped, the predicted noise kept
        x0 = (a_t.sqrt() * x_t - (1 - a_t).sqrt() * v).clamp(-1, 1)
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * (a_t.sqrt() * v + (1 - a_t).sqrt() * x_t)

    both(check_ddim_step(keeps_the_noise), "keeps the unclipped noise", "保留了未裁剪的噪声")
    both(check_ddim_step(lambda v, x, a, ap: x), "off DDIMScheduler.step", "最多相差")
    assert check_ddim_step(stub).status == "not done"
