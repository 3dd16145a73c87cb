"""Chapter 8's exercises: each reference solution passes its check, a typical wrong answer fails it, both languages."""

import pytest

from course_utils.exercises import TODO
from course_utils.exercises.chapter8 import (
    check_negative_prompt,
    check_strength_for_t600,
    check_vae_round_trip,
    img2img_start,
)
from course_utils.pretrained import path


def stub(*args):
    raise NotImplementedError(TODO)


def test_the_strength_for_t600_is_the_one_img2img_starts_at_601():
    assert img2img_start(0.62) == 601 and img2img_start(1.0) == 981
    assert check_strength_for_t600(0.62).status == "right"
    verdict = check_strength_for_t600(0.6)  # int(0.6 * 50) = 30 steps: starts at 581
    assert verdict.status == "wrong" and "t = 581" in verdict.en and "t = 581" in verdict.zh
    assert "重绘强度" in verdict.zh
    assert check_strength_for_t600(None).status == "not done"


@pytest.fixture(scope="module")
def text_parts():
    """The shipped tiny Stable Diffusion's tokenizer and text encoder (offline, seconds)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = path("tiny-sd-butterflies")
    return (CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
            CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval())


def solution_embed_pair(tokenizer, text_encoder, prompt, negative, padding="max_length"):
    ids = tokenizer([negative, prompt], padding=padding, max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def test_the_negative_prompt_goes_first_where_the_empty_one_was(text_parts):
    tokenizer, text_encoder = text_parts
    assert check_negative_prompt(solution_embed_pair, tokenizer, text_encoder).status == "right"
    swapped = check_negative_prompt(lambda tok, enc, p, n: solution_embed_pair(tok, enc, n, p), tokenizer, text_encoder)
    assert swapped.status == "wrong" and "swapped" in swapped.en and "顺序反了" in swapped.zh
    empty = check_negative_prompt(lambda tok, enc, p, n: solution_embed_pair(tok, enc, p, ""), tokenizer, text_encoder)
    assert empty.status == "wrong" and "empty prompt" in empty.en and "空提示词" in empty.zh
    short = check_negative_prompt(lambda tok, enc, p, n: solution_embed_pair(tok, enc, p, n, padding=True),
                                  tokenizer, text_encoder)
    assert short.status == "wrong" and "model_max_length" in short.en and "填充" in short.zh
    assert check_negative_prompt(stub, tokenizer, text_encoder).status == "not done"


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
