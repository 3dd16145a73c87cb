"""Chapter 13's exercises: each reference solution passes its check, a typical slip fails it with the intended
message in both languages, an untouched stub is "not done"."""

import pytest
import torch
import torch.nn.functional as F

from course_utils.exercises import TODO
from course_utils.exercises.chapter13 import (
    check_adaln_zero_sublayer,
    check_joint_attention,
    check_sd3_noise_level,
    check_to_tokens,
)


def stub(*args):
    raise NotImplementedError(TODO)


def to_tokens(x, p):
    n, c, h, w = x.shape
    patches = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (n, rows, columns, p, p, c)
    return patches.reshape(n, (h // p) * (w // p), p * p * c)


def test_to_tokens_solution_passes_and_the_usual_slips_fail():
    assert check_to_tokens(to_tokens).status == "right"
    assert check_to_tokens(lambda x, p: to_tokens(x, p).double()).status == "right"  # any float dtype

    def channel_first(x, p):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, p * p * c)

    verdict = check_to_tokens(channel_first)
    assert verdict.status == "wrong" and "right numbers in the wrong order within its patch" in verdict.en
    assert "channel first" in verdict.en and "channel last" in verdict.en
    assert "图块内部的顺序不对" in verdict.zh and "通道在最后" in verdict.zh

    def column_major(x, p):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // p, p, w // p, p).permute(0, 4, 2, 3, 5, 1).reshape(n, -1, p * p * c)

    verdict = check_to_tokens(column_major)
    assert verdict.status == "wrong" and "right patches in another order: row-major" in verdict.en
    assert "行优先" in verdict.zh

    verdict = check_to_tokens(lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]))
    assert verdict.status == "wrong" and "mix numbers from different patches" in verdict.en
    assert "混进了不同图块的数值" in verdict.zh
    verdict = check_to_tokens(lambda x, p: to_tokens(x, p).transpose(1, 2))
    assert verdict.status == "wrong" and "expected a tensor of shape (2, 16, 12)" in verdict.en
    assert "应为形状 (2, 16, 12) 的张量" in verdict.zh
    assert check_to_tokens(stub).status == "not done"


def adaln_zero_sublayer(x, c, modulation, sublayer):
    shift, scale, gate = modulation(F.silu(c)).chunk(3, dim=1)
    h = F.layer_norm(x, x.shape[-1:]) * (1 + scale[:, None]) + shift[:, None]
    return x + gate[:, None] * sublayer(h)


def test_adaln_zero_sublayer_solution_passes_and_the_usual_slips_fail():
    assert check_adaln_zero_sublayer(adaln_zero_sublayer).status == "right"

    def scale_alone(x, c, modulation, sublayer):
        shift, scale, gate = modulation(F.silu(c)).chunk(3, dim=1)
        return x + gate[:, None] * sublayer(F.layer_norm(x, x.shape[-1:]) * scale[:, None] + shift[:, None])

    verdict = check_adaln_zero_sublayer(scale_alone)
    assert verdict.status == "wrong" and "not by 1 + scale" in verdict.en and "only thanks to its gate" in verdict.en
    assert "而不是 1 + scale" in verdict.zh and "只靠门控" in verdict.zh

    def no_gate(x, c, modulation, sublayer):
        shift, scale, _ = modulation(F.silu(c)).chunk(3, dim=1)
        return x + sublayer(F.layer_norm(x, x.shape[-1:]) * (1 + scale[:, None]) + shift[:, None])

    verdict = check_adaln_zero_sublayer(no_gate)
    assert verdict.status == "wrong" and "the gate is missing" in verdict.en and "does not return x" in verdict.en
    assert "少了门控" in verdict.zh and "恒等映射" in verdict.zh

    verdict = check_adaln_zero_sublayer(lambda x, c, m, f: adaln_zero_sublayer(x, c, m, f) - x)
    assert verdict.status == "wrong" and "add the residual" in verdict.en and "残差连接" in verdict.zh

    def no_norm(x, c, modulation, sublayer):
        shift, scale, gate = modulation(F.silu(c)).chunk(3, dim=1)
        return x + gate[:, None] * sublayer(x * (1 + scale[:, None]) + shift[:, None])

    verdict = check_adaln_zero_sublayer(no_norm)
    assert verdict.status == "wrong" and "modulate LayerNorm(x)" in verdict.en and "LayerNorm(x)" in verdict.zh

    def no_silu(x, c, modulation, sublayer):
        shift, scale, gate = modulation(c).chunk(3, dim=1)
        return x + gate[:, None] * sublayer(F.layer_norm(x, x.shape[-1:]) * (1 + scale[:, None]) + shift[:, None])

    verdict = check_adaln_zero_sublayer(no_silu)
    assert verdict.status == "wrong" and "feed it silu(c)" in verdict.en and "silu(c)" in verdict.zh

    def swapped(x, c, modulation, sublayer):
        scale, shift, gate = modulation(F.silu(c)).chunk(3, dim=1)
        return x + gate[:, None] * sublayer(F.layer_norm(x, x.shape[-1:]) * (1 + scale[:, None]) + shift[:, None])

    verdict = check_adaln_zero_sublayer(swapped)
    assert verdict.status == "wrong" and "(shift, scale, gate), in that order" in verdict.en and "写反" in verdict.zh

    verdict = check_adaln_zero_sublayer(lambda x, c, m, f: adaln_zero_sublayer(x, c, m, f)[:, :1])
    assert verdict.status == "wrong" and "expected a tensor of shape (2, 6, 16)" in verdict.en
    assert check_adaln_zero_sublayer(stub).status == "not done"


def joint_attention(image, text, image_qkv, text_qkv, heads):
    q, k, v = (torch.cat([proj_image(image), proj_text(text)], dim=1)  # [image, text], as diffusers
               for proj_image, proj_text in zip(image_qkv, text_qkv, strict=True))
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (n, heads, tokens, width/heads)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
    return out.split([image.shape[1], text.shape[1]], dim=1)


def _attend(q, k, v, heads):
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


def test_joint_attention_solution_passes_and_the_usual_slips_fail():
    assert check_joint_attention(joint_attention).status == "right"

    def by_hand(image, text, image_qkv, text_qkv, heads):  # the softmax written out, text first: the same attention
        q, k, v = (torch.cat([proj_text(text), proj_image(image)], dim=1).unflatten(-1, (heads, -1)).transpose(1, 2)
                   for proj_image, proj_text in zip(image_qkv, text_qkv, strict=True))
        weights = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)
        text_out, image_out = (weights @ v).transpose(1, 2).flatten(2).split([text.shape[1], image.shape[1]], dim=1)
        return image_out, text_out

    assert check_joint_attention(by_hand).status == "right"

    def separate(image, text, image_qkv, text_qkv, heads):
        return (joint_attention(image, text[:, :0], image_qkv, text_qkv, heads)[0],
                joint_attention(text, image[:, :0], text_qkv, image_qkv, heads)[0])

    verdict = check_joint_attention(separate)
    assert verdict.status == "wrong" and "never see each other" in verdict.en and "互相看不见" in verdict.zh

    def cross(image, text, image_qkv, text_qkv, heads):  # SD 1's cross-attention, both ways
        image_q, text_q = image_qkv[0](image), text_qkv[0](text)
        image_kv, text_kv = [p(image) for p in image_qkv[1:]], [p(text) for p in text_qkv[1:]]
        return (_attend(image_q, *text_kv, heads), _attend(text_q, *image_kv, heads))

    verdict = check_joint_attention(cross)
    assert verdict.status == "wrong" and "cross-attention" in verdict.en and "交叉注意力" in verdict.zh

    verdict = check_joint_attention(lambda image, text, image_qkv, text_qkv, heads:
                                    joint_attention(image, text, image_qkv, image_qkv, heads))
    assert verdict.status == "wrong" and "both streams go through the image's projections" in verdict.en
    assert "每一路都有自己的 to_q" in verdict.zh

    verdict = check_joint_attention(lambda image, text, image_qkv, text_qkv, heads:
                                    joint_attention(image, text, image_qkv, text_qkv, 1))
    assert verdict.status == "wrong" and "one head" in verdict.en and "4 个头" in verdict.zh

    verdict = check_joint_attention(lambda *args: joint_attention(*args)[::-1])
    assert verdict.status == "wrong" and "you return (text_out, image_out)" in verdict.en and "先返回图像" in verdict.zh
    verdict = check_joint_attention(lambda *args: joint_attention(*args)[0])
    assert verdict.status == "wrong" and "two tensors" in verdict.en and "两个张量" in verdict.zh
    assert check_joint_attention(stub).status == "not done"


def sd3_noise_level(u, shift):
    s = 1 - torch.floor(u * 1000) / 1000  # the scheduler's table has 1000 levels, from pure noise down
    sigma = shift * s / (1 + (shift - 1) * s)
    return sigma, 1000 * sigma


def test_sd3_noise_level_solution_passes_and_the_usual_slips_fail():
    assert check_sd3_noise_level(sd3_noise_level).status == "right"
    assert check_sd3_noise_level(lambda u, shift: [t[:, None] for t in sd3_noise_level(u, shift)]).status == "right"

    def no_floor(u, shift):
        s = 1 - u
        return shift * s / (1 + (shift - 1) * s), 1000 * shift * s / (1 + (shift - 1) * s)

    verdict = check_sd3_noise_level(no_floor)
    assert verdict.status == "wrong" and "s = 1 − u directly" in verdict.en and "floor(u·1000)" in verdict.zh
    assert "at shift 1," in verdict.en

    def no_shift(u, shift):
        s = 1 - torch.floor(u * 1000) / 1000
        return s, 1000 * s

    verdict = check_sd3_noise_level(no_shift)
    assert verdict.status == "wrong" and "at shift 3," in verdict.en and "unshifted level" in verdict.en
    assert "没有平移" in verdict.zh

    verdict = check_sd3_noise_level(lambda u, shift: (sd3_noise_level(u, shift)[0],) * 2)
    assert verdict.status == "wrong" and "the timestep is 1000·σ" in verdict.en and "时间步是 1000·σ" in verdict.zh
    verdict = check_sd3_noise_level(lambda u, shift: sd3_noise_level(u, shift)[0])
    assert verdict.status == "wrong" and "two tensors" in verdict.en and "两个张量" in verdict.zh
    verdict = check_sd3_noise_level(lambda u, shift: tuple(t[:10] for t in sd3_noise_level(u, shift)))
    assert verdict.status == "wrong" and "expected a tensor of shape (64,)" in verdict.en
    assert check_sd3_noise_level(stub).status == "not done"


def test_the_noise_level_is_the_chapters():
    sd3 = pytest.importorskip("course_utils.sd3")
    u = torch.rand(100, generator=torch.Generator().manual_seed(1))
    for shift in (1.0, 3.0):
        for ours, theirs in zip(sd3_noise_level(u, shift), sd3.shifted_sigmas(u, shift), strict=True):
            assert torch.allclose(ours, theirs)
