"""Chapter 8's exercises: each reference solution passes its check, a typical wrong answer fails it, both languages."""

import torch

from course_utils.exercises import TODO
from course_utils.exercises.chapter8 import (
    check_guided_noise,
    check_strength_for_t600,
    check_vae_round_trip,
    img2img_start,
)


def stub(*args):
    raise NotImplementedError(TODO)


def test_the_strength_for_t600_is_the_one_img2img_starts_at_601():
    assert img2img_start(0.62) == 601 and img2img_start(1.0) == 981
    assert check_strength_for_t600(0.62).status == "right"
    verdict = check_strength_for_t600(0.6)  # int(0.6 * 50) = 30 steps: starts at 581
    assert verdict.status == "wrong" and "t = 581" in verdict.en and "t = 581" in verdict.zh
    assert "重绘强度" in verdict.zh
    assert check_strength_for_t600(None).status == "not done"


def test_classifier_free_guidance_is_checked_at_several_scales():
    assert check_guided_noise(lambda u, c, s: u + s * (c - u)).status == "right"
    verdict = check_guided_noise(lambda u, c, s: c + s * (c - u))  # extrapolating from the prompt's side
    assert verdict.status == "wrong" and "scale 0" in verdict.en and "引导强度 0" in verdict.zh
    verdict = check_guided_noise(lambda u, c, s: torch.cat([u, c]))
    assert verdict.status == "wrong" and "shape" in verdict.en and "形状" in verdict.zh
    assert check_guided_noise(stub).status == "not done"


def solution_to_latents(vae, images):
    return vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor


def solution_to_images(vae, latents):
    return ((vae.decode(latents / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)


def test_the_vae_round_trip_needs_the_scaling_factor_both_ways():
    assert check_vae_round_trip(solution_to_latents, solution_to_images).status == "right"
    verdict = check_vae_round_trip(lambda vae, x: vae.encode(x * 2 - 1).latent_dist.mean, solution_to_images)
    assert verdict.status == "wrong" and "scaling_factor" in verdict.en and "scaling_factor" in verdict.zh
    verdict = check_vae_round_trip(solution_to_latents, lambda vae, z: ((vae.decode(z).sample + 1) / 2).clamp(0, 1))
    assert verdict.status == "wrong" and "divide" in verdict.en and "除以" in verdict.zh
    verdict = check_vae_round_trip(lambda vae, x: vae.encode(x).latent_dist.mean * 0.18215, solution_to_images)
    assert verdict.status == "wrong" and "[-1, 1]" in verdict.en
    assert check_vae_round_trip(stub, stub).status == "not done"
