"""Chapter 14's exercises: each reference solution passes its check, a typical slip fails it with the intended
message in both languages, an untouched stub is "not done"."""

import copy

import torch

from course_utils.exercises import TODO
from course_utils.exercises.chapter14 import check_lcm_scalings, check_lcm_timesteps, check_update_target


def stub(*args):
    raise NotImplementedError(TODO)


def lcm_scalings(t):
    scaled = 10 * t.float()
    return 0.5**2 / (scaled**2 + 0.5**2), scaled / (scaled**2 + 0.5**2) ** 0.5


def test_lcm_scalings_solution_passes_and_a_missing_scaling_or_a_swap_fails():
    assert check_lcm_scalings(lcm_scalings).status == "right"
    # the chapter's own scalings, shaped (n, 1, 1, 1), are accepted too
    assert check_lcm_scalings(lambda t: tuple(c.view(-1, 1, 1, 1) for c in lcm_scalings(t))).status == "right"

    def unscaled(t):
        t = t.float()
        return 0.25 / (t**2 + 0.25), t / (t**2 + 0.25) ** 0.5

    verdict = check_lcm_scalings(unscaled)
    assert verdict.status == "wrong" and "at t = 1 " in verdict.en and "multiplies the timestep by 10" in verdict.en
    assert "乘以 10" in verdict.zh and "t = 1 处" in verdict.zh
    verdict = check_lcm_scalings(lambda t: lcm_scalings(t)[::-1])
    assert verdict.status == "wrong" and "swapped" in verdict.en and "写反" in verdict.zh
    verdict = check_lcm_scalings(lambda t: lcm_scalings(t)[0])
    assert verdict.status == "wrong" and "two tensors" in verdict.en and "两个张量" in verdict.zh
    assert check_lcm_scalings(stub).status == "not done"


@torch.no_grad()
def update_target(target, student, decay):
    for p_target, p_student in zip(target.parameters(), student.parameters(), strict=True):
        p_target.mul_(decay).add_(p_student, alpha=1 - decay)


def test_update_target_solution_passes_and_the_usual_slips_fail():
    assert check_update_target(update_target).status == "right"

    @torch.no_grad()
    def flipped(target, student, decay):
        update_target(target, student, 1 - decay)

    verdict = check_update_target(flipped)
    assert verdict.status == "wrong" and "decay weighs the target" in verdict.en
    assert "decay 是目标网络自己的权重" in verdict.zh

    def a_new_model(target, student, decay):
        new = copy.deepcopy(target)
        update_target(new, student, decay)
        return new

    verdict = check_update_target(a_new_model)
    assert verdict.status == "wrong" and "you return a new model" in verdict.en and "返回了一个新模型" in verdict.zh

    @torch.no_grad()
    def moves_the_student(target, student, decay):
        update_target(student, target, decay)

    verdict = check_update_target(moves_the_student)
    assert verdict.status == "wrong" and "student's parameters changed" in verdict.en and "学生的参数变了" in verdict.zh

    def with_a_graph(target, student, decay):
        for p_target, p_student in zip(target.parameters(), student.parameters(), strict=True):
            p_target.mul_(decay).add_((1 - decay) * p_student)

    verdict = check_update_target(with_a_graph)
    assert verdict.status == "wrong" and "torch.no_grad()" in verdict.en and "计算图" in verdict.zh

    def zeroes_grads(target, student, decay):
        update_target(target, student, decay)
        student.zero_grad()

    verdict = check_update_target(zeroes_grads)
    assert verdict.status == "wrong" and "student's gradients changed" in verdict.en and "学生的梯度变了" in verdict.zh
    assert check_update_target(stub).status == "not done"


def test_the_update_is_the_chapters_ema_update():
    from course_utils.consistency import ema_update

    torch.manual_seed(0)
    target, student = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ours = copy.deepcopy(target)
    update_target(ours, student, 0.95)
    ema_update(target, student, 0.95)
    assert all(torch.allclose(a, b) for a, b in zip(ours.parameters(), target.parameters(), strict=True))


def lcm_timesteps(steps, original_steps=50):
    skip = 1000 // original_steps
    grid = torch.arange(original_steps, 0, -1) * skip - 1  # 999, 979, ..., 19 for 50
    return grid[torch.arange(steps) * original_steps // steps]


def test_lcm_timesteps_solution_passes_and_a_linspace_to_zero_fails():
    assert check_lcm_timesteps(lcm_timesteps).status == "right"
    assert check_lcm_timesteps(lambda steps, original_steps=50: lcm_timesteps(steps, original_steps).tolist()).status \
        == "right"
    verdict = check_lcm_timesteps(lambda steps, original_steps=50: torch.linspace(999, 0, steps).round().long())
    assert verdict.status == "wrong" and "not on the grid" in verdict.en and "linspace from 999 to 0" in verdict.en
    assert "不在网格" in verdict.zh and "linspace" in verdict.zh
    verdict = check_lcm_timesteps(lambda steps, original_steps=50: lcm_timesteps(steps, original_steps).flip(0))
    assert verdict.status == "wrong" and "from the noisy end" in verdict.en and "从 999 开始读网格" in verdict.zh
    verdict = check_lcm_timesteps(lambda steps, original_steps=50: lcm_timesteps(steps))  # ignores original_steps
    assert verdict.status == "wrong" and "grid of 25" in verdict.en and "25 步的网格" in verdict.zh
    verdict = check_lcm_timesteps(lambda steps, original_steps=50: lcm_timesteps(steps, original_steps)[:1])
    assert verdict.status == "wrong" and "expected a tensor of shape (2,)" in verdict.en
    assert check_lcm_timesteps(stub).status == "not done"
