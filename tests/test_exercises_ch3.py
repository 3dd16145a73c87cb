"""Chapter 3's checks: each reference solution passes; a typical wrong answer fails, in both languages."""

import torch
import torch.nn.functional as F

from course_utils.exercises import TODO
from course_utils.exercises.chapter3 import check_add_noise, check_random_flip, check_training_step, check_velocity


def stub(*args):
    raise NotImplementedError(TODO)


def add_noise(scheduler, clean, noise, t):
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * clean + (1 - a).sqrt() * noise


def training_step(model, scheduler, clean, generator):
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator)
    kind = scheduler.config.prediction_type
    target = {"epsilon": noise, "sample": clean}.get(kind) if kind != "v_prediction" else \
        scheduler.get_velocity(clean, noise, t)
    return F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, target)


def noise_target_only(model, scheduler, clean, generator):
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, 1000, (len(clean),), generator=generator)
    return F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, noise)


def random_flip(images, generator):
    mask = torch.rand(len(images), 1, 1, 1, generator=generator) < 0.5
    return torch.where(mask, images.flip(-1), images)


def velocity(scheduler, clean, noise, t):
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * clean


def test_the_reference_solutions_pass():
    assert check_add_noise(add_noise) and check_training_step(training_step)
    assert check_random_flip(random_flip) and check_velocity(velocity)


def test_untouched_stubs_are_not_done():
    for check in (check_add_noise, check_training_step, check_random_flip, check_velocity):
        assert check(stub).status == "not done"


def test_add_noise_without_square_roots_is_named():
    def no_sqrt(scheduler, clean, noise, t):
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        return a * clean + (1 - a) * noise

    verdict = check_add_noise(no_sqrt)
    assert not verdict and "sqrt" in verdict.en and "平方" in verdict.zh


def test_the_noise_target_for_every_prediction_type_or_uniform_noise_fails():
    def uniform(model, scheduler, clean, generator):
        noise = torch.rand(clean.shape, generator=generator)
        t = torch.randint(0, 1000, (len(clean),), generator=generator)
        return F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, noise)

    verdict = check_training_step(noise_target_only)
    assert not verdict and "'v_prediction'" in verdict.en and "get_velocity" in verdict.zh
    verdict = check_training_step(uniform)
    assert not verdict and "torch.rand" in verdict.en and "高斯" in verdict.zh
    verdict = check_training_step(lambda *a: training_step(*a).item())
    assert not verdict and "0-d tensor" in verdict.en


def test_an_upside_down_flip_or_flipping_everything_fails():
    verdict = check_random_flip(lambda images, generator: images.flip(-2))
    assert not verdict and "upside down" in verdict.en and "上下颠倒" in verdict.zh
    verdict = check_random_flip(lambda images, generator: images.flip(-1))
    assert not verdict and "100%" in verdict.en and "一半" in verdict.zh


def test_a_velocity_of_the_wrong_sign_fails():
    verdict = check_velocity(lambda *a: -velocity(*a))
    assert not verdict and "sign" in verdict.en and "符号" in verdict.zh
