"""Chapter 2's exercise checks, each against diffusers' DDPMScheduler: every reference solution passes; a typical
wrong answer fails with the intended message in both languages; an untouched stub is "not done"."""

import math

import torch

from course_utils.exercises import TODO
from course_utils.exercises.chapter2 import (
    check_cosine_betas,
    check_ddpm_step_large,
    check_halfway,
    check_zero_terminal_snr,
)


def stub(*args):
    raise NotImplementedError(TODO)


def wrong_in(verdict, en: str, zh: str) -> bool:
    return verdict.status == "wrong" and en in verdict.en and zh in verdict.zh


def cosine_abar(s: float, offset: float = 0.008) -> float:
    return math.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2


def cosine_betas(T, offset=0.008, cap=0.999):
    return torch.tensor([min(1 - cosine_abar((t + 1) / T, offset) / cosine_abar(t / T, offset), cap)
                         for t in range(T)])


def zero_terminal_snr(betas, scale=True, on_root=True):
    abar = torch.cumprod(1 - betas, dim=0)
    a = abar.sqrt() if on_root else abar
    first, last = a[0].clone(), a[-1].clone()
    a = a - last
    if scale:
        a = a * first / (first - last)
    abar = a**2 if on_root else a
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1 - alphas


def ddpm_step_large(eps, x_t, t, alphas_cumprod, noise, variance="beta", noise_at_zero=False):
    abar_t = alphas_cumprod[t]
    abar_prev = alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0)
    beta_t = 1 - abar_t / abar_prev
    x0_hat = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    mean = (abar_prev.sqrt() * beta_t * x0_hat + (1 - beta_t).sqrt() * (1 - abar_prev) * x_t) / (1 - abar_t)
    if t == 0 and not noise_at_zero:
        return mean
    var = beta_t if variance == "beta" else beta_t * (1 - abar_prev) / (1 - abar_t)
    return mean + var.sqrt() * noise


def test_solutions_are_right():
    assert check_cosine_betas(cosine_betas).status == "right"
    assert check_zero_terminal_snr(zero_terminal_snr).status == "right"
    assert check_ddpm_step_large(ddpm_step_large).status == "right"
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    verdict = check_halfway(int((abar < 0.5).nonzero()[0]))
    assert verdict.status == "right" and "linear one gets there" in verdict.en and "线性调度" in verdict.zh


def test_cosine_betas_mistakes_are_named():
    assert wrong_in(check_cosine_betas(lambda T: cosine_betas(T, cap=1.0)), "0.999", "0.999")
    assert wrong_in(check_cosine_betas(lambda T: cosine_betas(T, offset=0.0)), "offset", "偏移")
    abar = lambda T: torch.tensor([cosine_abar(t / T) for t in range(1, T + 1)])  # noqa: E731
    assert wrong_in(check_cosine_betas(abar), "ᾱ values", "ᾱ 的值")
    linear = lambda T: torch.linspace(1e-4, 0.02, T)  # noqa: E731
    assert wrong_in(check_cosine_betas(linear), "DDPMScheduler has", "DDPMScheduler 的是")
    assert wrong_in(check_cosine_betas(lambda T: cosine_betas(T)[None]), "shape", "形状")
    assert check_cosine_betas(stub).status == "not done"


def test_zero_terminal_snr_mistakes_are_named():
    assert wrong_in(check_zero_terminal_snr(lambda b: zero_terminal_snr(b, scale=False)), "scale √ᾱ_t", "缩放 √ᾱ_t")
    assert wrong_in(check_zero_terminal_snr(lambda b: b), "not 0", "不是 0")
    assert wrong_in(check_zero_terminal_snr(lambda b: zero_terminal_snr(b, on_root=False)), "not ᾱ_t", "不是 ᾱ_t")
    assert check_zero_terminal_snr(stub).status == "not done"


def test_ddpm_step_large_mistakes_are_named():
    small = lambda *a: ddpm_step_large(*a, variance="beta tilde")  # noqa: E731
    assert wrong_in(check_ddpm_step_large(small), "√β̃_t·z", "√β̃_t·z")
    assert wrong_in(check_ddpm_step_large(lambda *a: ddpm_step_large(*a, noise_at_zero=True)),
                    "returns the mean alone", "只返回均值")

    def undivided(eps, x_t, t, abar, noise):  # x0_hat without the division by sqrt(abar_t)
        abar_prev = abar[t - 1] if t > 0 else torch.tensor(1.0)
        beta_t = 1 - abar[t] / abar_prev
        x0_hat = x_t - (1 - abar[t]).sqrt() * eps
        mean = (abar_prev.sqrt() * beta_t * x0_hat + (1 - beta_t).sqrt() * (1 - abar_prev) * x_t) / (1 - abar[t])
        return mean + beta_t.sqrt() * noise if t > 0 else mean

    assert wrong_in(check_ddpm_step_large(undivided), "the mean is off", "均值最多差")
    assert check_ddpm_step_large(stub).status == "not done"


def test_halfway_mistakes_are_named():
    from diffusers import DDPMScheduler

    cosine = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    answer = int((cosine < 0.5).nonzero()[0])
    assert wrong_in(check_halfway(answer - 1), "still at or above", "仍不低于")
    assert wrong_in(check_halfway(int((cosine.sqrt() < 0.5).nonzero()[0])), "√ᾱ_t", "√ᾱ_t")
    linear = DDPMScheduler().alphas_cumprod
    assert wrong_in(check_halfway(int((linear < 0.5).nonzero()[0])), "linear", "线性")
    assert wrong_in(check_halfway(1000), "not a timestep", "不是时间步")
    assert wrong_in(check_halfway("half"), "whole number", "整数")
    assert check_halfway(None).status == "not done"
