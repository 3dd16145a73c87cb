"""course_utils.lcm_lora: the guided teacher step, one LCM-LoRA training step, and the saved LoRA loaded back."""

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler

from course_utils import lcm_lora, pretrained, tiny_sd
from course_utils.consistency import lcm_scheduler


@pytest.fixture(scope="module")
def base():
    """The shipped tiny Stable Diffusion (load it again for a copy without adapters)."""
    return pretrained.load("tiny-sd-butterflies")


@pytest.mark.parametrize("t", [999, 519, 19])
def test_teacher_step_is_the_guided_ddim_step_written_plainly(base, t):
    ddim = DDIMScheduler.from_config(base.scheduler.config)
    ddim.set_timesteps(50)  # its step goes from t to t - 20 (to alphas_cumprod[0] below 0, set_alpha_to_one False)
    alphas_cumprod = lcm_scheduler(base.scheduler.config, 20).alphas_cumprod
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(t))
    text = tiny_sd.encode_prompts(base.tokenizer, base.text_encoder, ["a red butterfly on a blue background",
                                                                      "a green butterfly"])
    uncond = tiny_sd.encode_prompts(base.tokenizer, base.text_encoder, ["", ""])
    scales = torch.tensor([5.0, 2.0])
    tt = torch.full((2,), t)
    with torch.no_grad():
        mine = lcm_lora.teacher_step(base.unet, x, tt, (tt - 20).clamp(min=0), text, uncond, scales, alphas_cumprod,
                                     "epsilon")
        for i, s in enumerate(scales.tolist()):
            eps_text = base.unet(x[i:i + 1], t, encoder_hidden_states=text[i:i + 1]).sample
            eps_empty = base.unet(x[i:i + 1], t, encoder_hidden_states=uncond[i:i + 1]).sample
            plain = ddim.step(eps_empty + s * (eps_text - eps_empty), t, x[i:i + 1]).prev_sample
            assert torch.allclose(mine[i:i + 1], plain, atol=1e-5), f"guidance {s} folded in at t={t}"


def test_one_training_step_trains_the_adapters_only_and_the_loss_is_finite(base):
    pipe = pretrained.load("tiny-sd-butterflies")
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    student, losses = lcm_lora.train(pipe, steps=2, n_images=8, batch=4, rank=2, lr=1e-2)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert 0 < losses[0] < 1, "the consistency gap of a trained teacher is small but not zero"
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    after = pipe.unet.state_dict()
    base_names = [n for n in after if "lora_" not in n]
    assert len(base_names) == len(before), "every base weight is still there, inside the LoRA layers"
    for name in base_names:
        assert torch.equal(after[name], before[name.replace("base_layer.", "")]), f"{name}: the base stays put"
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([999, 499])
    text = tiny_sd.encode_prompts(pipe.tokenizer, pipe.text_encoder, ["a red butterfly"] * 2)
    with torch.no_grad():
        with student.disable_adapter():
            teacher = student(x, t, encoder_hidden_states=text).sample
        adapted = student(x, t, encoder_hidden_states=text).sample
        assert torch.allclose(teacher, base.unet(x, t, encoder_hidden_states=text).sample, atol=1e-5)
    assert not torch.allclose(adapted, teacher, atol=1e-4), "two steps at lr 1e-2 moved the adapters"


def test_bad_guidance_range_is_refused(base):
    with pytest.raises(ValueError, match="guidance"):
        lcm_lora.train(pretrained.load("tiny-sd-butterflies"), steps=1, n_images=4, batch=4, guidance=(0.5, 2.0))


def test_the_saved_lora_loads_back_into_the_base_pipeline_with_lcm_scheduler(base, tmp_path):
    pipe = pretrained.load("tiny-sd-butterflies")
    student, _ = lcm_lora.train(pipe, steps=2, n_images=8, batch=4, rank=2, lr=1e-2)
    file = lcm_lora.save_lora(student, tmp_path / "lcm")
    assert file.is_file() and file.stat().st_size < 500_000
    loaded = lcm_lora.load_lcm_lora(pretrained.load("tiny-sd-butterflies"), tmp_path / "lcm")
    assert isinstance(loaded.scheduler, LCMScheduler) and loaded.scheduler.config.original_inference_steps == 50
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([999, 19])
    text = tiny_sd.encode_prompts(pipe.tokenizer, pipe.text_encoder, ["a blue butterfly on a pink background"] * 2)
    with torch.no_grad():
        assert torch.allclose(loaded.unet(x, t, encoder_hidden_states=text).sample,
                              student(x, t, encoder_hidden_states=text).sample, atol=1e-5), "the same adapters"
    images = tiny_sd.generate(loaded, ["a red butterfly", "a butterfly on a grey background", ""], guidance_scale=1,
                              steps=2)
    assert images.shape == (3, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
