"""Chapter 7: what its lesson on x0 clipping relies on, checked without sampling."""

import json

import torch
from diffusers import DDIMScheduler

from course_utils import pretrained


def test_the_conditional_model_ships_without_x0_clipping_as_its_recipe_says():
    shipped = json.loads((pretrained.path("digits-28-conditional") / "scheduler" / "scheduler_config.json").read_text())
    assert shipped["clip_sample"] is False
    assert pretrained.RECIPES["digits-28-conditional"].scheduler == {"clip_sample": False}


def test_clipping_x0_but_not_the_noise_leaves_the_path_that_recomputing_the_noise_keeps():
    # A v prediction whose x0 lies far outside [-1, 1], as a strongly guided one does.
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=True)
    scheduler.set_timesteps(20)
    t = int(scheduler.timesteps[10])
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    v = 5 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    free = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    free.set_timesteps(20)
    unclipped = free.step(v, t, x).prev_sample
    default = scheduler.step(v, t, x).prev_sample
    consistent = scheduler.step(v, t, x, use_clipped_model_output=True).prev_sample
    a = scheduler.alphas_cumprod[t]
    x0 = (a.sqrt() * x - (1 - a).sqrt() * v).clamp(-1, 1)
    eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # the noise the clipped x0 implies: the pair rebuilds x
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-5)
    assert not torch.allclose(default, consistent, atol=1e-2) and not torch.allclose(default, unclipped, atol=1e-2)
