"""course_utils.sampling: the hand DDIM step against the scheduler, guidance, flow-matching Euler steps, inversion."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from course_utils import pretrained
from course_utils.sampling import (
    ddim_invert,
    ddim_regenerate,
    ddim_step,
    predicted_x0_and_noise,
    sample_ddpm,
    sample_with_loss_guidance,
)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("clip", [True, False])
def test_hand_ddim_step_equals_the_scheduler(kind, clip):
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=kind, clip_sample=clip)
    scheduler.set_timesteps(20)
    x, out = torch.randn(2, 1, 8, 8) * 1.5, torch.randn(2, 1, 8, 8)
    timesteps = scheduler.timesteps.tolist()
    for t, t_next in zip(timesteps, timesteps[1:] + [-1], strict=True):
        expected = scheduler.step(out, t, x)
        x_next, x0 = ddim_step(scheduler, out, t, t_next, x)
        assert torch.allclose(x_next, expected.prev_sample, atol=1e-5), (t, t_next)
        assert torch.allclose(x0, expected.pred_original_sample, atol=1e-5)


def test_predicted_x0_inverts_add_noise():
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    x0, noise, t = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8), torch.tensor(600)
    xt = scheduler.add_noise(x0, noise, t)
    got_x0, got_noise = predicted_x0_and_noise(scheduler, scheduler.get_velocity(x0, noise, t), t, xt)
    assert torch.allclose(got_x0, x0, atol=1e-5) and torch.allclose(got_noise, noise, atol=1e-5)


def test_loss_guidance_at_scale_0_is_plain_sampling_and_a_scale_moves_the_samples(seeded_unet):
    unet, scheduler = seeded_unet(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    plain = sample_ddpm(unet, scheduler, 4, steps=10, seed=3)

    def brightness(x):
        return -x.mean(dim=(1, 2, 3))  # loss: low when the image is bright

    assert torch.equal(sample_with_loss_guidance(unet, scheduler, 4, 10, brightness, scale=0, seed=3), plain)
    guided = sample_with_loss_guidance(unet, scheduler, 4, 10, brightness, scale=20, seed=3)
    assert guided.mean() > plain.mean() + 0.1
    assert all(p.grad is None for p in unet.parameters())


def test_classifier_free_guidance_at_scale_1_and_0_is_the_conditional_and_unconditional_model():
    from course_utils.sampling import sample_with_guidance

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                       num_class_embeds=3).eval()
    with torch.no_grad():  # make the class embedding matter
        unet.class_embedding.weight.mul_(20)
    s = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    labels = torch.tensor([0, 1, 1])
    at_1 = sample_with_guidance(unet, s, 5, labels, guidance_scale=1.0, seed=3)
    at_0 = sample_with_guidance(unet, s, 5, labels, guidance_scale=0.0, seed=3)
    no_class = sample_with_guidance(unet, s, 5, torch.full((3,), 2), guidance_scale=1.0, seed=3)
    assert torch.allclose(at_0, no_class, atol=1e-5)  # scale 0: the unconditional prediction alone
    assert not torch.allclose(at_1, at_0, atol=1e-3)
    # scale 1 computes the conditional prediction once; the two-pass mix with s = 1 gives the same images
    at_1_mixed = sample_with_guidance(unet, s, 5, labels, guidance_scale=1.0 + 1e-9, seed=3)
    assert torch.allclose(at_1, at_1_mixed, atol=1e-5)
    assert at_1.shape == (3, 1, 8, 8) and at_1.min() >= -1 and at_1.max() <= 1


def test_an_euler_step_by_hand_is_the_flow_scheduler_step_and_sample_ddpm_runs_it(seeded_unet):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from course_utils.diffusion import flow_sigmas

    s = FlowMatchEulerDiscreteScheduler(shift=3.0)
    s.set_timesteps(4)
    x, v = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    for i, t in enumerate(s.timesteps):
        sigma, sigma_next = s.sigmas[i], s.sigmas[i + 1]
        assert float(t) == pytest.approx(float(sigma) * 1000, rel=1e-5)  # the U-Net sees sigma * 1000
        by_hand = x + (sigma_next - sigma) * v
        x = s.step(v, t, x).prev_sample
        assert torch.allclose(x, by_hand, atol=1e-6)
    assert s.sigmas[-1] == 0  # the last step lands on t = 0: the clean image
    model = seeded_unet()
    s = FlowMatchEulerDiscreteScheduler()
    a = sample_ddpm(model, s, 2, steps=3, seed=0)
    s.set_timesteps(sigmas=flow_sigmas(3))  # 1, 2/3, 1/3, then 0: three equal steps, as SD3's pipeline spaces them
    assert torch.allclose(s.sigmas, torch.tensor([1, 2 / 3, 1 / 3, 0]))
    x = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t, sigma, sigma_next in zip(s.timesteps, s.sigmas[:-1], s.sigmas[1:], strict=True):
            x = x + (sigma_next - sigma) * model(x, t).sample
    assert torch.allclose(a, x.clamp(-1, 1), atol=1e-5)


def test_inversion_is_exact_when_the_noise_prediction_does_not_depend_on_x():
    scheduler = DDIMScheduler.from_pretrained(pretrained.path("tiny-sd-butterflies"), subfolder="scheduler")
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = ddim_invert(lambda x, t: eps, scheduler, x0, 20)
    assert not torch.allclose(noise, x0, atol=0.1)
    assert torch.allclose(ddim_regenerate(lambda x, t: eps, scheduler, noise, 20), x0, atol=1e-4)
