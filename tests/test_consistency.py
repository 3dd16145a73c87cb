"""course_utils.consistency: the teacher's ODE over a skip is the teacher's own DDIM sampler, and the boundary holds."""

import pytest
import torch
from diffusers import DDIMScheduler

from course_utils import consistency

CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
              clip_sample=False)


@pytest.fixture
def unet(seeded_unet):
    return seeded_unet().eval()  # tests/conftest.py's 8x8 one-channel U-Net, the same weights every time


@pytest.mark.parametrize("skip, teacher_steps", [(20, 1), (100, 5), (50, 5)])
def test_the_teacher_over_a_skip_is_its_ddim_sampler_on_the_finer_grid(unet, skip, teacher_steps):
    """Five steps over a skip of 100 are five steps of DDIMScheduler on the 50-step trailing grid (499 -> 399)."""
    ddim = DDIMScheduler(**CONFIG, timestep_spacing="trailing")
    ddim.set_timesteps(1000 // (skip // teacher_steps))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    theirs, t = x, 499
    with torch.no_grad():
        for _ in range(teacher_steps):
            theirs = ddim.step(unet(theirs, t).sample, t, theirs).prev_sample
            t -= skip // teacher_steps
    ours = consistency.teacher_solve(unet, x, torch.full((3,), 499), skip, teacher_steps, ddim.alphas_cumprod,
                                     "v_prediction")
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_the_lowest_grid_point_lands_on_t_0_where_f_is_the_identity(unet):
    ac = DDIMScheduler(**CONFIG).alphas_cumprod
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    c_skip, c_out = consistency.boundary_scalings(torch.tensor([0]))
    assert float(c_skip) == pytest.approx(1) and float(c_out) == pytest.approx(0)
    with torch.no_grad():
        assert torch.allclose(consistency.consistency(unet, x, torch.zeros(2, dtype=torch.long), ac, "v_prediction"), x)
    # grid point 99 with a skip of 100 in 5 steps: 99 -> 79 -> ... -> 19 -> 0, never below 0
    assert torch.isfinite(consistency.teacher_solve(unet, x, torch.full((2,), 99), 100, 5, ac, "v_prediction")).all()


def test_distil_refuses_a_teacher_step_count_that_does_not_divide_the_skip(unet):
    with pytest.raises(ValueError, match="teacher_steps 3 a divisor of the skip"):
        consistency.distil(unet, CONFIG, torch.zeros(4, 1, 8, 8), steps=1, skip=100, teacher_steps=3)


def test_distil_with_several_teacher_steps_trains_and_keeps_the_teacher(unet):
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    images = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    student, losses = consistency.distil(unet, CONFIG, images, steps=2, batch=4, skip=100, teacher_steps=5)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items()), "the teacher is not trained"
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items()), "the student moved"
