"""Chapters 6-7: the hand DDIM step, loss guidance, class-conditioned training and LoRA adapters."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from course_utils.diffusion import make_unet, train_ddpm
from course_utils.lora import add_lora
from course_utils.sampling import ddim_step, predicted_x0_and_noise, sample_ddpm, sample_with_loss_guidance


def tiny_unet(**kwargs) -> UNet2DModel:
    torch.manual_seed(0)
    return make_unet(8, channels=(8, 16), layers_per_block=1, attention=1, in_channels=1, **kwargs)


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


def test_loss_guidance_at_scale_0_is_plain_sampling_and_a_scale_moves_the_samples():
    unet, scheduler = tiny_unet(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    plain = sample_ddpm(unet, scheduler, 4, steps=10, seed=3)

    def brightness(x):
        return -x.mean(dim=(1, 2, 3))  # loss: low when the image is bright

    assert torch.equal(sample_with_loss_guidance(unet, scheduler, 4, 10, brightness, scale=0, seed=3), plain)
    guided = sample_with_loss_guidance(unet, scheduler, 4, 10, brightness, scale=20, seed=3)
    assert guided.mean() > plain.mean() + 0.1
    assert all(p.grad is None for p in unet.parameters())


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


def test_lora_leaves_the_base_untouched_until_merged_and_merging_adds_the_adapters(tmp_path):
    from peft import PeftModel

    base = tiny_unet()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = add_lora(base, rank=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    data = [torch.rand(8, 1, 8, 8) * 2 - 1]
    optimizer = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-2)
    train_ddpm(base, DDPMScheduler(), data, epochs=3, lr=1e-2, optimizer=optimizer,
               generator=torch.Generator().manual_seed(0))
    for name, value in model.get_base_model().state_dict().items():  # base weights inside the LoRA layers
        plain = name.replace("base_layer.", "")
        if "lora_" not in name:
            assert torch.equal(value, before[plain]), name
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 500])
    with torch.no_grad():
        adapted = model(x, t).sample
    model.save_pretrained(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "adapter_model.safetensors").stat().st_size < 200_000
    fresh = tiny_unet()
    loaded = PeftModel.from_pretrained(fresh, tmp_path / "adapters")
    merged = loaded.merge_and_unload()
    assert type(merged) is UNet2DModel
    with torch.no_grad():
        assert torch.allclose(merged(x, t).sample, adapted, atol=1e-5)
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.split(".")[-2] in {"to_q", "to_k", "to_v", "0", "conv1", "conv2"} for k in changed)
