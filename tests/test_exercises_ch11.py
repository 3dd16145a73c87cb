"""Chapter 11's exercise checks: the reference solutions pass, typical wrong answers fail with the intended
message in both languages, an untouched stub is "not done"."""

import pytest
import torch
import torch.nn.functional as F

from course_utils import pretrained
from course_utils.controlnet import depth_maps
from course_utils.exercises import TODO
from course_utils.exercises.chapter11 import check_controlled_noise, check_iou, check_straight_height


def stub(*args):
    raise NotImplementedError(TODO)


def test_iou_solution_passes_and_intersection_over_one_mask_is_named():
    assert check_iou(lambda a, b: ((a & b).sum() / (a | b).sum()).item()).status == "right"
    verdict = check_iou(lambda a, b: ((a & b).sum() / a.sum()).item())
    assert verdict.status == "wrong" and "divide by the union" in verdict.en and "并集" in verdict.zh
    assert check_iou(stub).status == "not done"


@pytest.fixture(scope="module")
def pipe():
    return pretrained.load("tiny-sd-butterflies-controlnet")


def solution(controlnet, unet, x, t, text, control, scale):
    down, mid = controlnet(x, t, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
    return unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=[d * scale for d in down],
                mid_block_additional_residual=mid * scale).sample


def test_controlled_noise_solution_passes_and_an_unscaled_mid_residual_fails(pipe):
    assert check_controlled_noise(solution, pipe).status == "right"

    def mid_unscaled(controlnet, unet, x, t, text, control, scale):
        down, mid = controlnet(x, t, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
        return unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=[d * scale for d in down],
                    mid_block_additional_residual=mid).sample

    verdict = check_controlled_noise(mid_unscaled, pipe)
    assert verdict.status == "wrong" and "at scale 0.5" in verdict.en and "强度 0.5" in verdict.zh
    assert check_controlled_noise(stub, pipe).status == "not done"


def straight_height(controls):
    inside = (controls.mean(dim=1, keepdim=True) > 0.5).float()
    plus = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    height = torch.zeros_like(inside)
    while inside.any():
        height += inside
        inside = (F.conv2d(inside, plus, padding=1) == 5).float()
    return (height / height.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1)).squeeze(1)


def test_straight_height_solution_passes_and_the_chapters_square_peeling_is_named():
    assert check_straight_height(straight_height).status == "right"
    verdict = check_straight_height(depth_maps)  # the chapter's 3x3 erosion: diagonals count as one step
    assert verdict.status == "wrong" and "plus shape" in verdict.en and "十字形" in verdict.zh
    verdict = check_straight_height(lambda controls: straight_height(controls) * 7)
    assert verdict.status == "wrong" and "its own largest value" in verdict.en and "最大值" in verdict.zh
    assert check_straight_height(stub).status == "not done"
