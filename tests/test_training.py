import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from course_utils.training import ddpm_target, sample_ddpm, train_ddpm


def tiny_unet():
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)


def test_targets_follow_the_prediction_type():
    x0, eps, t = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
    assert torch.equal(ddpm_target(DDPMScheduler(prediction_type="epsilon"), x0, eps, t), eps)
    assert torch.equal(ddpm_target(DDPMScheduler(prediction_type="sample"), x0, eps, t), x0)
    s = DDPMScheduler(prediction_type="v_prediction")
    abar = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(ddpm_target(s, x0, eps, t), abar.sqrt() * eps - (1 - abar).sqrt() * x0, atol=1e-6)
    with pytest.raises(ValueError, match="prediction_type"):
        ddpm_target(DDPMScheduler(prediction_type="flow"), x0, eps, t)


def test_training_lowers_the_loss_and_sampling_gives_images():
    torch.manual_seed(0)
    data = [(torch.rand(16, 1, 8, 8) * 2 - 1, torch.zeros(16)) for _ in range(4)]
    model, s = tiny_unet(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    losses = train_ddpm(model, s, data, epochs=6, lr=3e-3, generator=torch.Generator().manual_seed(0))
    assert len(losses) == 6 and losses[-1] < losses[0]
    a = sample_ddpm(model, s, 3, steps=5, seed=1)
    assert a.shape == (3, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, sample_ddpm(model, s, 3, steps=5, seed=1))
    assert len(s.timesteps) == 1000  # the caller's scheduler is not changed by sampling
