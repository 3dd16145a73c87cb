"""Chapter 12's exercises: each reference solution passes its check, a typical slip fails it with the intended
message in both languages, an untouched stub is "not done"."""

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from course_utils.exercises import TODO
from course_utils.exercises.chapter12 import check_heun_step, check_shift, check_x0_and_noise


def stub(*args):
    raise NotImplementedError(TODO)


def shift_sigmas(sigmas, shift):
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def test_shift_solution_passes_and_a_wrong_denominator_fails():
    assert check_shift(shift_sigmas).status == "right"
    verdict = check_shift(lambda sigmas, shift: shift * sigmas / (1 + shift * sigmas))
    assert verdict.status == "wrong" and "shift 3.0" in verdict.en and "shift 为 3.0" in verdict.zh
    assert check_shift(stub).status == "not done"


def test_shifting_the_schedulers_own_grid_shifts_its_end_twice():
    """Why the exercise passes its sigmas explicitly: set_timesteps(n) spaces the grid down to the already
    shifted sigma_min and then shifts it again, so shifting the shift-1 grid by hand does not give it."""
    base, shifted = FlowMatchEulerDiscreteScheduler(shift=1.0), FlowMatchEulerDiscreteScheduler(shift=3.0)
    base.set_timesteps(10)
    shifted.set_timesteps(10)
    assert not torch.allclose(shift_sigmas(base.sigmas[:-1], 3.0), shifted.sigmas[:-1], atol=1e-5)


def x0_and_noise(x_t, v, t):
    t = t.view(-1, 1, 1, 1)
    return x_t - t * v, x_t + (1 - t) * v


def test_x0_and_noise_solution_passes_and_swapped_times_fail():
    assert check_x0_and_noise(x0_and_noise).status == "right"

    def swapped(x_t, v, t):
        t = t.view(-1, 1, 1, 1)
        return x_t - (1 - t) * v, x_t + t * v

    verdict = check_x0_and_noise(swapped)
    assert verdict.status == "wrong" and "x0 = x_t − t·v" in verdict.en and "x0 = x_t − t·v" in verdict.zh
    verdict = check_x0_and_noise(lambda x_t, v, t: x_t - t.view(-1, 1, 1, 1) * v)
    assert verdict.status == "wrong" and "two tensors" in verdict.en
    assert check_x0_and_noise(stub).status == "not done"


def heun_step(velocity, x, t, t_next):
    v1 = velocity(x, t)
    x_euler = x + (t_next - t) * v1
    return x + (t_next - t) * (v1 + velocity(x_euler, t_next)) / 2


def test_heun_step_solution_passes_and_euler_or_the_end_velocity_alone_fail():
    assert check_heun_step(heun_step).status == "right"
    verdict = check_heun_step(lambda velocity, x, t, t_next: x + (t_next - t) * velocity(x, t))
    assert verdict.status == "wrong" and "your step is Euler's" in verdict.en and "欧拉步" in verdict.zh

    def end_velocity_only(velocity, x, t, t_next):
        x_euler = x + (t_next - t) * velocity(x, t)
        return x + (t_next - t) * velocity(x_euler, t_next)

    verdict = check_heun_step(end_velocity_only)
    assert verdict.status == "wrong" and "off by" in verdict.en and "相差" in verdict.zh
    assert check_heun_step(stub).status == "not done"
