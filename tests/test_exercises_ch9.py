"""Chapter 9's exercises: each reference solution passes its check, a typical wrong answer fails it, in both languages.

A fixed stand-in for the U-Net (its noise depends on x and t, so the round trip is inexact) keeps the checks offline
and fast; the notebook passes the real model.
"""

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from course_utils.exercises import TODO
from course_utils.exercises.chapter9 import (
    check_invert_step,
    check_invert_with_diffusers,
    check_round_trip_errors,
    partial_round_trip_error,
)
from course_utils.tiny_sd import SCHEDULE

scheduler = DDIMScheduler(**SCHEDULE, steps_offset=1, set_alpha_to_one=False)
latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))


def predict(x, t):
    return 0.5 * x + 0.3 * torch.sin(torch.as_tensor(t, dtype=torch.float32) / 100)


def stub(*args):
    raise NotImplementedError(TODO)


def solution_invert_step(x, eps, t, t_next, abar):
    x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
    return abar[t_next].sqrt() * x0 + (1 - abar[t_next]).sqrt() * eps


def test_one_inversion_step_is_ddim_inverse_schedulers():
    assert check_invert_step(solution_invert_step).status == "right"
    verdict = check_invert_step(lambda x, eps, t, t_next, abar: solution_invert_step(x, eps, t_next, t, abar))
    assert verdict.status == "wrong" and "DDIMInverseScheduler.step" in verdict.en and "ᾱ" in verdict.zh
    assert check_invert_step(stub).status == "not done"


def test_partial_round_trip_errors_are_recomputed_and_shrink_to_zero():
    steps = 10
    errors = {k: partial_round_trip_error(predict, latents, steps, k) for k in range(steps)}
    assert errors[0] > errors[steps // 2] > errors[steps - 1] == 0
    verdict = check_round_trip_errors(errors, predict, latents, steps)
    assert verdict.status == "right" and "on the whole" in verdict.en and "总体上" in verdict.zh
    off = {**errors, 0: errors[0] * 1.5}
    verdict = check_round_trip_errors(off, predict, latents, steps)
    assert verdict.status == "wrong" and "start_step 0" in verdict.en and "start_step 为 0" in verdict.zh
    shifted = {k: errors[max(k - 1, 0)] for k in range(steps)}  # the path cut one step off at the wrong end
    verdict = check_round_trip_errors(shifted, predict, latents, steps)
    assert verdict.status == "wrong" and "must be 0" in verdict.en
    assert check_round_trip_errors({0: 1.0}, predict, latents, steps).status == "wrong"
    assert check_round_trip_errors(None, predict, latents, steps).status == "not done"


def solution_invert_with_diffusers(predict, latents, steps):
    inverse = DDIMInverseScheduler.from_config(scheduler.config)
    inverse.set_timesteps(steps)
    ratio = inverse.config.num_train_timesteps // steps
    x = latents
    for t in inverse.timesteps[1:]:
        x = inverse.step(predict(x, t - ratio), t, x).prev_sample
    return x


def naive_invert_with_diffusers(predict, latents, steps):
    """The loop diffusers' own inversion pipelines write: the noise predicted at t, where x is not yet."""
    inverse = DDIMInverseScheduler.from_config(scheduler.config)
    inverse.set_timesteps(steps)
    x = latents
    for t in inverse.timesteps:
        x = inverse.step(predict(x, t), t, x).prev_sample
    return x


def test_inversion_with_ddim_inverse_scheduler_equals_ddim_invert():
    assert check_invert_with_diffusers(solution_invert_with_diffusers, predict, latents).status == "right"
    verdict = check_invert_with_diffusers(naive_invert_with_diffusers, predict, latents)
    assert verdict.status == "wrong" and "ddim_invert" in verdict.en and "ddim_invert" in verdict.zh
    assert check_invert_with_diffusers(stub, predict, latents).status == "not done"
