"""Chapter 1's exercise checks: each reference solution passes; a typical wrong answer fails with the intended
message in both languages; an untouched stub is "not done"."""

import math

import pytest
import torch
from torch import nn

from course_utils.exercises import TODO
from course_utils.exercises.chapter1 import (
    check_best_guess,
    check_concat_unet,
    check_corrupt,
    check_timestep_embedding,
)


def stub(*args):
    raise NotImplementedError(TODO)


def wrong_in(verdict, en: str, zh: str) -> bool:
    return verdict.status == "wrong" and en in verdict.en and zh in verdict.zh


# ---- corrupt -------------------------------------------------------------------------------------------------------
def corrupt(x, amount):
    noise = torch.rand_like(x)
    amount = amount.view(-1, 1, 1, 1)
    return x * (1 - amount) + noise * amount


def test_corrupt_solution_is_right_and_leaves_the_callers_random_state_alone():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    assert check_corrupt(corrupt).status == "right"
    assert torch.equal(torch.rand(3), before), "the check must not move the notebook's random numbers"


def test_corrupt_mistakes_are_named():
    gaussian = lambda x, a: x * (1 - a.view(-1, 1, 1, 1)) + torch.randn_like(x) * a.view(-1, 1, 1, 1)  # noqa: E731
    assert wrong_in(check_corrupt(gaussian), "uniform", "均匀")
    no_view = lambda x, a: x * (1 - a) + torch.rand_like(x) * a  # noqa: E731
    assert wrong_in(check_corrupt(no_view), ".view(-1, 1, 1, 1)", ".view(-1, 1, 1, 1)")
    always_noisy = lambda x, a: 0.5 * x + 0.5 * torch.rand_like(x)  # noqa: E731
    assert wrong_in(check_corrupt(always_noisy), "amount 0", "amount 为 0")
    swapped = lambda x, a: x * a.view(-1, 1, 1, 1) + torch.rand_like(x) * (1 - a.view(-1, 1, 1, 1))  # noqa: E731
    assert check_corrupt(swapped).status == "wrong"
    assert check_corrupt(stub).status == "not done"


# ---- best guess ----------------------------------------------------------------------------------------------------
@pytest.fixture
def images():
    return torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_best_guess_solution_is_right_and_beats_any_single_digit(images):
    verdict = check_best_guess(images.mean(dim=0), images)
    assert verdict.status == "right" and "below the best single" in verdict.en and "低于" in verdict.zh


def test_best_guess_mistakes_are_named(images):
    assert wrong_in(check_best_guess(images.mean(), images), "dim=0", "dim=0")
    assert wrong_in(check_best_guess(images[3], images), "one of the digits", "其中一个数字")
    assert wrong_in(check_best_guess(images.median(dim=0).values, images), "best possible", "最好")
    assert check_best_guess(None, images).status == "not done"


# ---- concatenating U-Net -------------------------------------------------------------------------------------------
def conv(i, o):
    return nn.Conv2d(i, o, kernel_size=5, padding=2)


class UNet(nn.Module):
    def __init__(self, concat: bool = True):
        super().__init__()
        self.concat = concat
        self.down_layers = nn.ModuleList([conv(1, 32), conv(32, 64), conv(64, 64)])
        extra = (64, 32) if concat else (0, 0)
        self.up_layers = nn.ModuleList([conv(64, 64), conv(64 + extra[0], 32), conv(32 + extra[1], 1)])
        self.act, self.down, self.up = nn.SiLU(), nn.MaxPool2d(2), nn.Upsample(scale_factor=2)

    def forward(self, x):
        skips = []
        for i, layer in enumerate(self.down_layers):
            x = self.act(layer(x))
            if i < 2:
                skips.append(x)
                x = self.down(x)
        for i, layer in enumerate(self.up_layers):
            if i > 0:
                x = torch.cat([self.up(x), skips.pop()], dim=1) if self.concat else self.up(x) + skips.pop()
            x = self.act(layer(x))
        return x


def test_concat_unet_solution_is_right():
    verdict = check_concat_unet(UNet)
    assert verdict.status == "right" and "concatenated" in verdict.en and "拼接" in verdict.zh


def test_concat_unet_mistakes_are_named():
    assert wrong_in(check_concat_unet(lambda: UNet(concat=False)), "still added", "仍是相加")

    class Wider(UNet):  # concatenated, and the output shape is right, but a layer is not the chapter's
        def __init__(self):
            super().__init__(concat=True)
            self.up_layers[0] = conv(64, 96)
            self.up_layers[1] = conv(96 + 64, 32)

    assert wrong_in(check_concat_unet(Wider), "(64 + 64)→32", "(64 + 64)→32")

    class Pooled(nn.Module):
        def forward(self, x):
            return x[..., ::2, ::2]

    assert wrong_in(check_concat_unet(Pooled), "input's", "输入形状相同")
    assert check_concat_unet(None).status == "not done"


# ---- timestep embedding --------------------------------------------------------------------------------------------
def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def test_timestep_embedding_solution_is_right_and_says_t0_is_a_constant():
    verdict = check_timestep_embedding(timestep_embedding)
    assert verdict.status == "right" and "16 ones" in verdict.en and "常量" in verdict.zh


def test_timestep_embedding_mistakes_are_named():
    sin_first = lambda t, d: timestep_embedding(t, d).roll(d // 2, dims=1)  # noqa: E731
    assert wrong_in(check_timestep_embedding(sin_first), "cosines first", "余弦放在前面")

    def shifted(t, dim):
        half = dim // 2
        args = t[:, None].float() * torch.exp(-math.log(10000) * torch.arange(half) / (half - 1))[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    assert wrong_in(check_timestep_embedding(shifted), "half − 1", "half − 1")
    assert wrong_in(check_timestep_embedding(lambda t, d: torch.zeros(len(t), d)), "at t = 0", "t = 0 时")
    assert wrong_in(check_timestep_embedding(lambda t, d: torch.zeros(d)), "one row", "每个时间步一行")
    assert check_timestep_embedding(stub).status == "not done"
