"""Profiles (small / cpu / full), each chapter's settings, device choice and seeding.

One environment variable, ``COURSE_PROFILE``, picks how much work every notebook does:

- ``full``  -- the published settings, meant for a GPU;
- ``cpu``   -- what a learner without a GPU runs in minutes and still sees real results;
- ``small`` -- the test profile: seconds per notebook (used by nbval); offline, except against a mirror that
  ``HF_ENDPOINT`` or ``COURSE_MNIST_MIRROR`` names (``make test-online`` runs a Hub on 127.0.0.1).

The default is ``full`` when CUDA is available and ``cpu`` otherwise.
"""

from __future__ import annotations

import os
import random
from types import SimpleNamespace

import numpy as np
import torch

PROFILES = ("small", "cpu", "full")

# Every chapter's hyperparameters, per profile, in one place. A notebook's config cell reads them
# with ``chapter_config("ch1")`` and shows each value where it is used (``lr = cfg.lr  # 1e-3 in cpu``): to try
# another value, edit it in the notebook's cell; change it here to change the course (and its tests) for everyone.
SETTINGS: dict[str, dict[str, dict]] = {
    "ch0": {
        "small": dict(n_preview=8, n_butterflies=64),
        "cpu": dict(n_preview=8, n_butterflies=1000),
        "full": dict(n_preview=8, n_butterflies=1000),
    },
    # Chapter 1: the toy denoiser. full = the published setting (MNIST, batch 128, 3 epochs).
    "ch1": {
        "small": dict(max_train=256, batch_size=32, lr=1e-3, basic_epochs=1, unet_epochs=1,
                      sample_steps=10, n_grid=16, n_score=64),
        "cpu": dict(max_train=6000, batch_size=32, lr=1e-3, basic_epochs=10, unet_epochs=3,
                    sample_steps=40, n_grid=64, n_score=200),
        "full": dict(max_train=None, batch_size=128, lr=1e-3, basic_epochs=3, unet_epochs=3,
                     sample_steps=40, n_grid=64, n_score=256),
    },
    # Chapter 2: schedules, and a small experiment comparing epsilon / x0 / v targets on digits.
    "ch2": {
        "small": dict(max_train=256, batch_size=32, lr=1e-3, epochs=1, channels=(16, 32),
                      sample_steps=20, n_score=64, shipped_steps=10),
        # cpu: the CPU recipe (benchmarks/cpu_recipe.py): 16 channels at full resolution, three levels; the notebook
        # adds warm-up + cosine decay and an EMA (not min-SNR: it would weight the three targets alike); ~2 min each
        "cpu": dict(max_train=None, batch_size=64, lr=2e-3, epochs=20, channels=(16, 32, 64),
                    sample_steps=50, n_score=200, shipped_steps=50),
        # full: 5 epochs of MNIST per target, so the chapter fits a free T4's quarter hour (full_profile_cost.py)
        "full": dict(max_train=None, batch_size=128, lr=1e-3, epochs=5, channels=(32, 64, 64),
                     sample_steps=1000, n_score=256, shipped_steps=50),
    },
    # Chapter 3: a UNet2DModel on butterflies. full = the published setting (30 epochs, (64, 128, 128, 256), constant
    # lr). cpu: the CPU recipe (benchmarks/cpu_recipe.py, "ch3-v-cos"): four narrow levels (attention at 4x4), the v
    # target, warm-up + cosine decay, 480 steps
    "ch3": {
        "small": dict(n_images=64, image_size=32, batch_size=16, lr=1e-3, epochs=2, report_every=1,
                      channels=(16, 32), layers_per_block=1, attention=0, lr_schedule="cosine", warmup=2,
                      sample_steps=20, n_samples=16, compare_steps=10, prediction_type="v_prediction"),
        "cpu": dict(n_images=1000, image_size=32, batch_size=64, lr=2e-3, epochs=30, report_every=5,
                    channels=(16, 32, 64, 128), layers_per_block=1, attention=1, lr_schedule="cosine", warmup=50,
                    sample_steps=100, n_samples=64, compare_steps=50, prediction_type="v_prediction"),
        "full": dict(n_images=1000, image_size=32, batch_size=64, lr=4e-4, epochs=30, report_every=5,
                     channels=(64, 128, 128, 256), layers_per_block=2, attention=2, lr_schedule="constant", warmup=0,
                     sample_steps=1000, n_samples=64, compare_steps=50, prediction_type="epsilon"),
    },
    # Chapter 4: load chapter 3's pipeline, sample reproducibly, swap in DDIM, write a card, share.
    "ch4": {
        "small": dict(ddpm_steps=20, ddim_steps=10, n_images=8),
        "cpu": dict(ddpm_steps=1000, ddim_steps=50, n_images=8),
        "full": dict(ddpm_steps=1000, ddim_steps=50, n_images=16),
    },
    # Chapter 5: the Accelerate training script, run from the notebook (interrupted once, then resumed).
    "ch5": {
        "small": dict(n_images=32, resolution=16, batch_size=8, lr=1e-3, max_train_steps=40, checkpointing_steps=4,
                      save_images_epochs=1, inference_steps=10, eval_batch_size=8, channels=(16, 32), attention=0,
                      extra=[]),
        "cpu": dict(n_images=1000, resolution=32, batch_size=64, lr=2e-3, max_train_steps=480, checkpointing_steps=80,
                    save_images_epochs=5, inference_steps=100, eval_batch_size=16, channels=(16, 32, 64, 128),
                    attention=1,
                    # chapter 3's cpu recipe (benchmarks/cpu_recipe.py, "ch3-v-cos"): four narrow levels, the v
                    # target, warm-up (the notebook's 50 steps) + cosine decay, an EMA of the weights
                    extra=["--lr_scheduler", "cosine", "--prediction_type", "v_prediction",
                           "--use_ema"]),
        "full": dict(n_images=1000, resolution=32, batch_size=64, lr=4e-4, max_train_steps=480, checkpointing_steps=100,
                     save_images_epochs=5, inference_steps=1000, eval_batch_size=16, channels=None, attention=None,
                     extra=["--mixed_precision", "fp16", "--use_ema"]),  # fp16: a T4 (free Colab) has no bf16
    },
    # Chapter 6: samplers on the shipped digits-28, fine-tuning the shipped butterflies-32 (full and LoRA).
    "ch6": {
        "small": dict(n_score=16, samplers=[("DDPM", 20), ("DDIM", 10), ("DPM-Solver++", 10)], eta_steps=10,
                      ft_images=16, ft_few=4, ft_batch=8, ft_lr=3e-4, lora_lr=3e-4, ft_checkpoints=(0, 2, 4),
                      lora_rank=8, n_show=8, sample_steps=10, n_measure=16, script_steps=2),
        # cpu: DDPM 1000 (and 100) would add 1,100 U-Net calls on 100 digits (minutes on a CPU); full has them
        "cpu": dict(n_score=100, samplers=[("DDPM", 50), ("DDIM", 50), ("DDIM", 20), ("DDIM", 10), ("DDIM", 5),
                                           ("DPM-Solver++", 20), ("DPM-Solver++", 10), ("DPM-Solver++", 5)],
                    eta_steps=10, ft_images=64, ft_few=8, ft_batch=16, ft_lr=3e-4, lora_lr=3e-4,
                    ft_checkpoints=(0, 30, 60, 120), lora_rank=8, n_show=8, sample_steps=20, n_measure=32,
                    script_steps=20),
        "full": dict(n_score=200, samplers=[("DDPM", 1000), ("DDPM", 100), ("DDPM", 50), ("DDIM", 50), ("DDIM", 20),
                                           ("DDIM", 10), ("DDIM", 5), ("DPM-Solver++", 20), ("DPM-Solver++", 10),
                                           ("DPM-Solver++", 5)],
                     eta_steps=20, ft_images=256, ft_few=16, ft_batch=32, ft_lr=3e-4, lora_lr=3e-4,
                     ft_checkpoints=(0, 100, 200, 400), lora_rank=8, n_show=8, sample_steps=50, n_measure=64,
                     script_steps=200),
    },
    # Chapter 7: loss and classifier guidance on the shipped models, a class-conditioned U-Net with CFG (trained with
    # chapter 2's recipe: the v target, warm-up + cosine decay, an EMA; three levels in cpu so it obeys the label).
    "ch7": {
        "small": dict(colour="blue", colour_scales=(0, 15), n_guided=8, guided_steps=10, digit=3,
                      digit_scales=(0, 3), cond_channels=(16, 32), cond_epochs=1, cond_max_train=256,
                      cfg_scales=(1, 3), clip_scales=(1, 3), per_digit=2, cfg_steps=10),
        "cpu": dict(colour="blue", colour_scales=(0, 5, 15, 50), n_guided=32, guided_steps=20, digit=3,
                    digit_scales=(0, 1, 3, 10), cond_channels=(16, 32, 64), cond_epochs=15, cond_max_train=None,
                    cfg_scales=(1, 2, 3, 5, 7.5), clip_scales=(1, 2, 3, 5), per_digit=3, cfg_steps=20),
        "full": dict(colour="blue", colour_scales=(0, 5, 15, 50), n_guided=64, guided_steps=50, digit=3,
                     digit_scales=(0, 1, 3, 10), cond_channels=(32, 64, 64), cond_epochs=30, cond_max_train=None,
                     cfg_scales=(1, 2, 3, 5, 7.5), clip_scales=(1, 2, 3, 5, 7.5), per_digit=20, cfg_steps=50),
    },
    # Chapter 8: the shipped tiny-sd-butterflies part by part, the pipeline, img2img, inpainting, a short script run.
    # full also runs a real Stable Diffusion checkpoint (online, on a GPU) through the same cells.
    "ch8": {
        "small": dict(n_recon=16, steps=10, scales=(1, 5), per_colour=2, n_edit=8, strengths=(0.1, 0.9),
                      script=dict(num_images=32, vae_steps=4, max_train_steps=4, batch=8), real_model=None,
                      dreambooth_model=None),
        "cpu": dict(n_recon=200, steps=50, scales=(1, 2, 3, 5, 7.5), per_colour=16, n_edit=32,
                    strengths=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
                    script=dict(num_images=500, vae_steps=20, max_train_steps=40, batch=64), real_model=None,
                    dreambooth_model=None),
        "full": dict(n_recon=200, steps=50, scales=(1, 2, 3, 5, 7.5), per_colour=32, n_edit=64,
                     strengths=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
                     script=dict(num_images=5000, vae_steps=1000, max_train_steps=2500, batch=128),
                     real_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
                     dreambooth_model="sd-dreambooth-library/mr-potato-head"),
    },
    # Chapter 9: DDIM inversion of drawn butterflies on tiny-sd-butterflies; edits by a changed prompt.
    "ch9": {
        "small": dict(n_images=4, steps_list=(5, 10), scales=(1, 3), edit_steps=10, n_edit=4, edit_scale=3),
        "cpu": dict(n_images=32, steps_list=(5, 10, 20, 50, 100), scales=(1, 2, 3, 5), edit_steps=50, n_edit=32,
                    edit_scale=3),
        "full": dict(n_images=64, steps_list=(5, 10, 20, 50, 100, 250), scales=(1, 2, 3, 5), edit_steps=50,
                     n_edit=64, edit_scale=3),
    },
    # Chapter 11: ControlNet and Depth2Image on tiny-sd-butterflies: posed drawings and their silhouettes; the
    # shipped ControlNet measured against the plain pipeline, the conditioning scale and its training log, then the
    # shipped depth U-Net the same way; a few training steps of each shown.
    "ch11": {
        "small": dict(n_show=4, n_eval=4, steps=4, guidance=5.0, scales=(0.0, 1.0), train_steps=2, batch_size=4,
                      lr=1e-3),
        "cpu": dict(n_show=8, n_eval=48, steps=20, guidance=5.0, scales=(0.0, 0.25, 0.5, 1.0, 1.5), train_steps=20,
                    batch_size=16, lr=1e-3),
        "full": dict(n_show=8, n_eval=200, steps=50, guidance=5.0, scales=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
                     train_steps=100, batch_size=32, lr=1e-3),
    },
    # Chapter 12: flow matching on 2-D points (reflow too), then on digits against DDPM with the same U-Net and
    # steps; then the shipped digits-28-flow against digits-28. cpu: ~1 minute of training per digit model; the
    # shipped digits-28 (attention at 14x14) costs ~4 s per call on 100 digits, so cpu scores it up to 8 steps.
    "ch12": {
        "small": dict(toy_points=512, toy_steps=200, toy_batch=128, toy_lr=3e-3, reflow_pairs=512, path_steps=20,
                      max_train=256, batch_size=32, lr=2e-3, epochs=1, channels=(16, 32), n_score=32,
                      steps_list=(1, 2, 4), shipped_n=16, shipped_steps=(1, 4)),
        "cpu": dict(toy_points=4000, toy_steps=3000, toy_batch=256, toy_lr=3e-3, reflow_pairs=4000, path_steps=100,
                    max_train=None, batch_size=64, lr=2e-3, epochs=8, channels=(16, 32, 64), n_score=200,
                    steps_list=(1, 2, 4, 8, 16, 50), shipped_n=100, shipped_steps=(1, 2, 4, 8)),
        "full": dict(toy_points=8000, toy_steps=8000, toy_batch=512, toy_lr=3e-3, reflow_pairs=8000, path_steps=100,
                     max_train=None, batch_size=128, lr=1e-3, epochs=10, channels=(32, 64, 64), n_score=200,
                     steps_list=(1, 2, 4, 8, 16, 50), shipped_n=200, shipped_steps=(1, 2, 4, 8, 16, 50)),
    },
    # Chapter 14: consistency distillation of the shipped digits-28 (a minute or two of it in cpu; the shipped
    # digits-28-lcm carries the long run), its few-step samples scored against the teacher's DDIM.
    # Chapter 13: a DiT written out and proven equal to diffusers'; DiT against the U-Net for the same seconds;
    # SD3's training step, the course's script for a few steps, the shipped tiny-sd3-butterflies read.
    "ch13": {
        "small": dict(race_seconds=2, batch_size=16, lr=2e-3, n_score=20, sample_steps=4, guidance=(1.0,),
                      speed_sizes=(28,), speed_patches=(2, 4), speed_batch=4, speed_steps=1, script_steps=3,
                      script_images=64, n_eval=8, eval_steps=4, scales=(1.0, 5.0)),
        "cpu": dict(race_seconds=45, batch_size=64, lr=2e-3, n_score=50, sample_steps=20, guidance=(1.0, 2.0),
                    speed_sizes=(28, 56), speed_patches=(2, 4), speed_batch=16, speed_steps=2, script_steps=300,
                    script_images=1000, n_eval=48, eval_steps=20, scales=(1.0, 3.0, 5.0)),
        "full": dict(race_seconds=120, batch_size=64, lr=2e-3, n_score=200, sample_steps=20, guidance=(1.0, 2.0),
                     speed_sizes=(28, 56), speed_patches=(2, 4), speed_batch=64, speed_steps=5, script_steps=2000,
                     script_images=5000, n_eval=200, eval_steps=50, scales=(1.0, 3.0, 5.0)),
    },
    "ch14": {
        "small": dict(distil_steps=2, batch_size=8, lr=1e-4, ema=0.95, skip=20, n_score=16, steps_list=(1, 2),
                      n_show=8, lora_steps=2, lora_images=32, n_lora=8),
        "cpu": dict(distil_steps=100, batch_size=32, lr=1e-4, ema=0.95, skip=20, n_score=100, steps_list=(1, 2, 4),
                    n_show=12, lora_steps=60, lora_images=512, n_lora=100),
        "full": dict(distil_steps=500, batch_size=32, lr=1e-4, ema=0.95, skip=20, n_score=200,
                     steps_list=(1, 2, 4, 8), n_show=12, lora_steps=600, lora_images=2000, n_lora=200),
    },
    # Chapter 10: synthesised arpeggios as 32x32 mel spectrograms; a U-Net trained on them, the shipped
    # audio-arpeggios-32, fine-tuned on minor arpeggios. full also loads the book's Hub pipeline and GTZAN (online).
    "ch10": {
        "small": dict(n_clips=64, batch_size=16, lr=1e-3, epochs=2, channels=(16, 32), attention=0, sample_steps=10,
                      n_score=8, n_show=4, n_round_trip=4, ft_clips=32, ft_epochs=1, ft_lr=1e-3, online=False),
        "cpu": dict(n_clips=1000, batch_size=32, lr=2e-3, epochs=6, channels=(16, 32, 64), attention=1,
                    sample_steps=50, n_score=64, n_show=8, n_round_trip=32, ft_clips=256, ft_epochs=4, ft_lr=1e-3,
                    online=False),
        "full": dict(n_clips=4000, batch_size=64, lr=1e-3, epochs=20, channels=(32, 64, 128, 128), attention=1,
                     sample_steps=50, n_score=200, n_show=8, n_round_trip=100, ft_clips=1000, ft_epochs=5,
                     ft_lr=1e-3, online=True),
    },
}


def get_profile() -> str:
    """Return the active profile: ``COURSE_PROFILE`` if set, else ``full`` with CUDA and ``cpu`` without."""
    name = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(
            f"COURSE_PROFILE={os.environ['COURSE_PROFILE']!r} is not a profile; "
            f"set it to one of {', '.join(PROFILES)} (or unset it for the default)."
        )
    return name


def get_device() -> torch.device:
    """Pick the device: ``COURSE_DEVICE`` if set, else CUDA, then Apple's MPS, then the CPU."""
    wanted = os.environ.get("COURSE_DEVICE", "").strip()
    if wanted:
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def chapter_config(chapter: str, profile: str | None = None) -> SimpleNamespace:
    """Return one chapter's settings for a profile (default: the active one), plus ``profile`` and ``device``."""
    if chapter not in SETTINGS:
        raise KeyError(f"no settings for chapter {chapter!r}; known chapters: {', '.join(SETTINGS)}")
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    values = dict(SETTINGS[chapter][profile])
    return SimpleNamespace(profile=profile, device=get_device(), **values)
