"""Chapter 1's exercises: the corruption process, the loss-optimal guess for pure noise (why the toy's samples
blur), a U-Net whose skips concatenate, and the timestep embedding diffusers' ``UNet2DModel`` adds (checked against
its ``Timesteps`` module: timestep 0 is a constant embedding, not "no conditioning")."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import Timesteps
from torch import nn

from . import Verdict, checked, right, wrong


def _reference_corrupt(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """The chapter's definition."""
    noise = torch.rand_like(x)
    return x * (1 - amount.view(-1, 1, 1, 1)) + noise * amount.view(-1, 1, 1, 1)


def _seeded(function, *args, seed: int = 0):
    """``function(*args)`` with torch's global generator seeded, leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return function(*args)


@checked
def check_corrupt(corrupt) -> Verdict:
    """``corrupt(x, amount)`` is the chapter's uniform-noise mix, one amount per image, on a fixed batch and seed."""
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(123))  # not the noise's seed (0)
    amount = torch.tensor([0.0, 0.25, 0.5, 1.0])
    try:
        got = _seeded(corrupt, x, amount)
    except RuntimeError as error:
        if "must match the size" not in str(error):
            raise
        return wrong(f"shapes do not broadcast ({error}): amount has one value per image; reshape it with "
                     ".view(-1, 1, 1, 1) so it multiplies each image's (C, H, W)",
                     f"形状无法广播（{error}）：amount 每张图像一个值；用 .view(-1, 1, 1, 1) 变形，"
                     "才能乘到每张图像的 (C, H, W) 上")
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return wrong(f"corrupt returned {shape}; it should return a tensor shaped like x, {tuple(x.shape)}",
                     f"corrupt 返回了 {shape}；应返回与 x 形状相同的张量 {tuple(x.shape)}")
    if not torch.equal(got[0], x[0]):
        return wrong("amount 0 must leave the image untouched: x * (1 - 0) + noise * 0 is x",
                     "amount 为 0 时图像应保持不变：x * (1 - 0) + noise * 0 就是 x")
    if got.min() < 0 or got.max() > 1:
        return wrong(f"values reach [{got.min():.2f}, {got.max():.2f}]: the toy mixes with *uniform* noise in "
                     "[0, 1] (torch.rand_like), so a mix of two things in [0, 1] stays in [0, 1]",
                     f"数值达到 [{got.min():.2f}, {got.max():.2f}]：这个玩具模型混合的是 [0, 1] 内的*均匀*噪声"
                     "（torch.rand_like），两个 [0, 1] 内的量混合后仍在 [0, 1] 内")
    if not torch.allclose(_seeded(corrupt, torch.zeros_like(x), amount)[3], got[3]):
        return wrong("at amount 1 the result still depends on the image: it should be pure noise",
                     "amount 为 1 时结果仍取决于图像：它应该是纯噪声")
    expected = _seeded(_reference_corrupt, x, amount)
    if not torch.allclose(got, expected, atol=1e-6):
        worst = int((got - expected).abs().amax(dim=(1, 2, 3)).argmax())
        return wrong(f"the mix is off at amount {amount[worst]:.2f}: expected x * (1 - amount) + noise * amount "
                     "with noise = torch.rand_like(x) drawn once",
                     f"amount 为 {amount[worst]:.2f} 时混合不对：应为 x * (1 - amount) + noise * amount，"
                     "其中 noise = torch.rand_like(x) 只抽取一次")
    return right("corrupt matches the chapter's definition at amounts 0, 0.25, 0.5 and 1",
                 "corrupt 在 amount 为 0、0.25、0.5 和 1 时都与本章的定义一致")


@checked
def check_best_guess(best_guess, images) -> Verdict:
    """``best_guess`` is the image with the least mean squared error to all of ``images``: their pixel-wise mean."""
    expected = images.float().mean(dim=0)
    if not isinstance(best_guess, torch.Tensor):
        return wrong(f"best_guess is a {type(best_guess).__name__}; make it a tensor shaped like one image, "
                     f"{tuple(expected.shape)}",
                     f"best_guess 是 {type(best_guess).__name__}；它应是与一张图像形状相同的张量 "
                     f"{tuple(expected.shape)}")
    guess = best_guess.detach().float().cpu()
    if guess.numel() == 1:
        return wrong("that is one number for every pixel: average over the images only (dim=0), pixel by pixel",
                     "这是所有像素共用的一个数值：只在图像之间平均（dim=0），逐像素地平均")
    if guess.squeeze().shape != expected.squeeze().shape:
        return wrong(f"best_guess has shape {tuple(guess.shape)}; expected one image, {tuple(expected.shape)}",
                     f"best_guess 的形状是 {tuple(guess.shape)}；应为一张图像的形状 {tuple(expected.shape)}")
    guess = guess.reshape(expected.shape)
    flat = images.float().flatten(1)
    mse = lambda g: float(((flat - g.flatten()) ** 2).mean())  # noqa: E731
    if any(torch.equal(guess, im.float()) for im in images):
        return wrong(f"that is one of the digits (mean squared error {mse(guess):.4f}); the loss-optimal guess for "
                     f"pure noise is the average of them all ({mse(expected):.4f})",
                     f"这是其中一个数字（均方误差 {mse(guess):.4f}）；对纯噪声而言损失最小的猜测是所有数字的平均"
                     f"（{mse(expected):.4f}）")
    if not torch.allclose(guess, expected, atol=1e-4):
        return wrong(f"its mean squared error to the images is {mse(guess):.4f}; the best possible is "
                     f"{mse(expected):.4f}",
                     f"它与这些图像的均方误差是 {mse(guess):.4f}；最好可以达到 {mse(expected):.4f}")
    best_single = float(torch.cdist(flat, flat).pow(2).mean(dim=1).min()) / flat.shape[1]
    return right(f"the mean digit: mean squared error {mse(guess):.4f} to the images, below the best single "
                 f"digit's {best_single:.4f} — a blur, and the answer that minimises the loss when the input says "
                 "nothing about which digit it was",
                 f"平均数字：与这些图像的均方误差为 {mse(guess):.4f}，低于最好的单个数字的 {best_single:.4f}——"
                 "它是一团模糊，却是在输入完全看不出是哪个数字时使损失最小的答案")


def _conv_parameters(pairs: list[tuple[int, int]]) -> int:
    return sum(25 * i * o + o for i, o in pairs)


ADDING = _conv_parameters([(1, 32), (32, 64), (64, 64), (64, 64), (64, 32), (32, 1)])
CONCATENATING = _conv_parameters([(1, 32), (32, 64), (64, 64), (64, 64), (64 + 64, 32), (32 + 32, 1)])


@checked
def check_concat_unet(unet_class) -> Verdict:
    """``unet_class()`` is BasicUNet with its two skip connections concatenated (``torch.cat``) instead of added."""
    model = unet_class()
    if not isinstance(model, nn.Module):
        return wrong(f"{unet_class!r}() is not a torch.nn.Module", f"{unet_class!r}() 不是 torch.nn.Module")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    if out.shape != x.shape:
        return wrong(f"the output has shape {tuple(out.shape)}; a U-Net's output has the input's, {tuple(x.shape)}",
                     f"输出形状是 {tuple(out.shape)}；U-Net 的输出应与输入形状相同 {tuple(x.shape)}")
    n = sum(p.numel() for p in model.parameters())
    if n == ADDING:
        return wrong(f"{n:,} parameters, as many as BasicUNet: the skips are still added; concatenating doubles "
                     "the channels the next convolution reads",
                     f"{n:,} 个参数，与 BasicUNet 一样多：跳跃连接仍是相加；拼接会让下一个卷积读入的通道数加倍")
    if n != CONCATENATING:
        return wrong(f"{n:,} parameters; with the skips concatenated the up convolutions are 64→64, "
                     f"(64 + 64)→32 and (32 + 32)→1, {CONCATENATING:,} parameters in all",
                     f"{n:,} 个参数；跳跃连接拼接后，上行卷积是 64→64、(64 + 64)→32 和 (32 + 32)→1，"
                     f"共 {CONCATENATING:,} 个参数")
    return right(f"{n:,} parameters ({n - ADDING:+,} against BasicUNet), output shaped like the input: the skips "
                 "are concatenated, as in diffusers' U-Nets",
                 f"{n:,} 个参数（比 BasicUNet {n - ADDING:+,}），输出与输入形状相同：跳跃连接是拼接的，"
                 "和 diffusers 的 U-Net 一样")


@checked
def check_timestep_embedding(timestep_embedding) -> Verdict:
    """``timestep_embedding(t, dim)`` equals the ``Timesteps`` projection of the chapter's ``UNet2DModel``
    (cos first, ``downscale_freq_shift=0``) for dim 32 at t = 0, 1, 10, 250 and 999."""
    t = torch.tensor([0, 1, 10, 250, 999])
    dim = 32
    expected = Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)(t)
    got = timestep_embedding(t, dim)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return wrong(f"got {shape}; expected one row of {dim} numbers per timestep, {tuple(expected.shape)}",
                     f"得到 {shape}；应为每个时间步一行 {dim} 个数值，即 {tuple(expected.shape)}")
    got = got.float()
    if torch.allclose(got, expected, atol=1e-5):
        return right("your embedding equals diffusers' Timesteps; at t = 0 it is 16 ones then 16 zeros (cos 0, "
                     "sin 0): a constant the U-Net's time MLP turns into the same vector for every image, not "
                     "'no conditioning'",
                     "你的嵌入与 diffusers 的 Timesteps 一致；t = 0 时它是 16 个 1 接着 16 个 0（cos 0、sin 0）："
                     "这是一个常量，U-Net 的时间 MLP 把它变成对每张图像都相同的向量，而不是“没有条件”")
    half = dim // 2
    if torch.allclose(got, torch.cat([expected[:, half:], expected[:, :half]], dim=1), atol=1e-5):
        return wrong("sines and cosines are in the other order: the chapter's UNet2DModel puts the cosines first "
                     "(flip_sin_to_cos=True)",
                     "正弦和余弦的顺序反了：本章的 UNet2DModel 把余弦放在前面（flip_sin_to_cos=True）")
    shifted = Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=1)(t)
    if torch.allclose(got, shifted, atol=1e-5):
        return wrong("your frequencies divide the exponent by half − 1; UNet2DModel's freq_shift is 0, so the "
                     "frequencies are exp(−ln(10000)·i / half) for i = 0 … half − 1",
                     "你的频率把指数除以了 half − 1；UNet2DModel 的 freq_shift 为 0，所以频率是 "
                     "exp(−ln(10000)·i / half)，i = 0 … half − 1")
    if not torch.allclose(got[0], expected[0], atol=1e-5):
        return wrong(f"at t = 0 your embedding starts {got[0, :4].tolist()}; diffusers' is cos 0 = 1 for the first "
                     f"{half} numbers and sin 0 = 0 for the rest",
                     f"t = 0 时你的嵌入开头是 {got[0, :4].tolist()}；diffusers 的前 {half} 个数是 cos 0 = 1，"
                     "其余是 sin 0 = 0")
    worst = int((got - expected).abs().amax(dim=1).argmax())
    return wrong(f"your embedding differs from diffusers' Timesteps at t = {int(t[worst])}: check the frequencies "
                 "exp(−ln(10000)·i / half) and the product t · frequency",
                 f"你的嵌入在 t = {int(t[worst])} 处与 diffusers 的 Timesteps 不同：请检查频率 "
                 "exp(−ln(10000)·i / half) 以及乘积 t · 频率")
