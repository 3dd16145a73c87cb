import copy

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from course_utils.diffusion import ddpm_target, diffusion_loss, min_snr_weights, train_ddpm
from course_utils.sampling import sample_ddpm


def tiny_unet(**kwargs):
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                       **kwargs)


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


def test_fast_path_gives_the_same_losses_as_the_plain_loop():
    from course_utils.data import DeviceBatches

    torch.manual_seed(0)
    images = (torch.rand(32, 1, 8, 8) * 255).to(torch.uint8)
    plain_batches = [(images[i:i + 8].float() / 127.5 - 1, None) for i in range(0, 32, 8)]
    fast_batches = DeviceBatches(images, 8, "cpu", flip=False, shuffle=False)
    losses = []
    for batches, fast in ((plain_batches, False), (fast_batches, True)):
        torch.manual_seed(1)
        model = tiny_unet()
        losses.append(train_ddpm(model, DDPMScheduler(), batches, epochs=3, lr=1e-3, fast=fast,
                                 generator=torch.Generator().manual_seed(2)))
    assert losses[0][-1] < losses[0][0]
    assert torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-4)


def test_ema_is_stepped_after_every_update():
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    model = tiny_unet()
    ema = EMAModel(model.parameters(), decay=0.9)
    data = [torch.rand(8, 1, 8, 8) * 2 - 1 for _ in range(3)]
    train_ddpm(model, DDPMScheduler(), data, epochs=2, lr=1e-2, ema=ema)
    assert ema.optimization_step == 6
    params = list(model.parameters())
    assert any(not torch.allclose(s, p) for s, p in zip(ema.shadow_params, params, strict=True))


def test_min_snr_weights_give_every_target_the_same_clipped_x0_loss():
    # per-image loss x weight = min(SNR, gamma) x |x0 error|^2 for epsilon, v and x0 alike (Hang et al. 2023)
    t, gamma = torch.tensor([5, 100, 500, 990]), 5.0
    x0, eps, guess = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    abar = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod[t]
    snr = abar / (1 - abar)
    assert snr[0] > gamma > snr[-1]  # the clip bites at small t only
    expected = snr.clamp(max=gamma) * ((guess - x0) ** 2).mean(dim=(1, 2, 3))
    for kind in ("epsilon", "v_prediction", "sample"):
        s = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=kind)
        noisy = s.add_noise(x0, eps, t)
        a, b = abar.view(-1, 1, 1, 1).sqrt(), (1 - abar).view(-1, 1, 1, 1).sqrt()
        # the prediction that implies x0 = guess from this noisy image
        prediction = {"epsilon": (noisy - a * guess) / b, "sample": guess,
                      "v_prediction": (a * noisy - guess) / b}[kind]
        per_image = ((prediction - ddpm_target(s, x0, eps, t)) ** 2).mean(dim=(1, 2, 3))
        assert torch.allclose(per_image * min_snr_weights(s, t, gamma), expected, rtol=1e-3), kind


def test_lr_scheduler_and_snr_gamma_reach_the_training_step():
    torch.manual_seed(0)
    model = tiny_unet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    data = [torch.rand(8, 1, 8, 8) * 2 - 1 for _ in range(3)]
    s = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    train_ddpm(model, s, data, 1, 1e-2, optimizer=optimizer, lr_scheduler=schedule, snr_gamma=5.0,
               generator=torch.Generator().manual_seed(0))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 8)  # stepped once per batch
    # one batch from the same weights and noise: min(SNR, 5) / (SNR + 1) < 1 makes the weighted loss smaller
    first = [train_ddpm(m, s, data[:1], 1, 0.0, generator=torch.Generator().manual_seed(0), snr_gamma=gamma)[0]
             for m, gamma in ((copy.deepcopy(model), 5.0), (copy.deepcopy(model), None))]
    assert first[0] < first[1]


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_diffusion_loss_is_the_step_written_out_with_diffusers_min_snr_and_label_dropping(kind):
    from diffusers.training_utils import compute_snr

    torch.manual_seed(0)
    model = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                        norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                        num_class_embeds=4)
    s = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=kind)
    clean, labels = torch.rand(6, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2])
    loss = diffusion_loss(model, s, clean, labels, generator=torch.Generator().manual_seed(3), snr_gamma=5.0,
                          class_drop_prob=0.5)
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order, by hand
    noise = torch.randn(clean.shape, generator=g)
    t = torch.randint(0, 1000, (6,), generator=g)
    dropped = torch.where(torch.rand(6, generator=g) < 0.5, 3, labels)
    assert 0 < (dropped == 3).sum() < 6, "the seed should drop some labels and keep others"
    target = noise if kind == "epsilon" else s.get_velocity(clean, noise, t)
    with torch.no_grad():
        error = ((model(s.add_noise(clean, noise, t), t, class_labels=dropped).sample - target) ** 2).mean((1, 2, 3))
    snr = compute_snr(s, t)  # diffusers' train_text_to_image.py weighting
    weights = torch.stack([snr, 5.0 * torch.ones_like(t)], 1).min(1)[0] / (snr if kind == "epsilon" else snr + 1)
    assert torch.allclose(loss, (error * weights).mean(), rtol=1e-5)


# ---- Chapter 12: flow matching -----------------------------------------------------------------------------


def test_flow_matching_inputs_are_the_straight_line_its_velocity_and_sigma_times_1000():
    from diffusers import FlowMatchEulerDiscreteScheduler

    from course_utils.diffusion import flow_matching_inputs

    x0, eps = torch.full((2, 1, 4, 4), 0.5), torch.ones(2, 1, 4, 4)
    noisy, target, t = flow_matching_inputs(x0, eps, torch.tensor([0.25, 1.0]))
    assert torch.allclose(noisy[0], torch.full((1, 4, 4), 0.75 * 0.5 + 0.25)) and torch.equal(noisy[1], eps[1])
    assert torch.equal(target, eps - x0) and torch.equal(t, torch.tensor([250.0, 1000.0]))
    # diffusers' forward process for flow matching gives the same point at the same timestep
    s = FlowMatchEulerDiscreteScheduler()
    x0, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    sigmas = s.sigmas[torch.tensor([100, 700])]
    noisy, _, t = flow_matching_inputs(x0, eps, sigmas)
    assert torch.allclose(noisy, s.scale_noise(x0, t, eps), atol=1e-6)


def test_train_ddpm_with_a_flow_scheduler_takes_the_flow_matching_loss():
    from diffusers import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(0)
    clean = torch.rand(6, 1, 8, 8) * 2 - 1
    model = tiny_unet()
    before = copy.deepcopy(model)
    losses = train_ddpm(model, FlowMatchEulerDiscreteScheduler(), [clean], epochs=1, lr=1e-3,
                        generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the loop's draws, in its order: noise, then t uniform in [0, 1]
    noise = torch.randn(clean.shape, generator=g)
    t = torch.rand(len(clean), generator=g).view(-1, 1, 1, 1)
    with torch.no_grad():
        prediction = before((1 - t) * clean + t * noise, t.flatten() * 1000).sample
    expected = ((prediction - (noise - clean)) ** 2).mean()
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="snr_gamma"):
        train_ddpm(model, FlowMatchEulerDiscreteScheduler(), [clean], 1, 1e-3, snr_gamma=5.0)


def test_flow_loss_with_paired_noise_uses_that_noise():
    from diffusers import FlowMatchEulerDiscreteScheduler

    from course_utils.diffusion import diffusion_loss

    torch.manual_seed(0)
    clean, noise, sigmas = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8), torch.tensor([0.2, 0.5, 0.9])
    model = tiny_unet()
    loss = diffusion_loss(model, FlowMatchEulerDiscreteScheduler(), clean, sigmas=sigmas, noise=noise)
    s = sigmas.view(-1, 1, 1, 1)
    with torch.no_grad():  # reflow's loss: the straight line from each image to *its* noise, not a fresh draw
        expected = ((model((1 - s) * clean + s * noise, sigmas * 1000).sample - (noise - clean)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_conditional_training_drops_labels_to_the_no_class_label():
    unet = tiny_unet(num_class_embeds=3)
    seen = []
    original = unet.forward

    def spy(x, t, class_labels=None):
        seen.append(class_labels.clone())
        return original(x, t, class_labels=class_labels)

    unet.forward = spy
    data = [(torch.rand(64, 1, 8, 8) * 2 - 1, torch.ones(64, dtype=torch.long))]
    train_ddpm(unet, DDPMScheduler(), data, epochs=3, lr=1e-3, generator=torch.Generator().manual_seed(0),
               class_drop_prob=0.25)
    labels = torch.cat(seen)
    assert set(labels.tolist()) == {1, 2}  # 2 = "no class", the last embedding
    assert 0.1 < (labels == 2).float().mean() < 0.4
