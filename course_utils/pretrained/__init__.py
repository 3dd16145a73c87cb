"""The course's own pretrained pipelines: small diffusers folders shipped inside the package.

Offline there is no Hub, and on a CPU minutes of training give blobs, so the course ships models of its own,
trained by its own scripts with the recipes in ``recipes.py``:

- ``digits-28``: unconditional 28x28 grayscale digits (chapter 1's ``UNet2DModel`` layout);
- ``digits-28-conditional``: the same layout with diffusers' class embedding (10 digits + "no class"),
  for classifier-free guidance;
- ``digits-28-flow``: the same digits by flow matching (chapter 12), a ``FlowMatchEulerDiscreteScheduler``;
- ``butterflies-32``: unconditional 32x32 synthetic butterflies;
- ``audio-arpeggios-32``: synthesised arpeggios as 32x32 mel spectrograms (chapter 10);
- ``tiny-sd-butterflies``: a tiny Stable Diffusion (VAE, CLIP tokenizer and text encoder, conditional U-Net),
  32x32 butterflies from captions such as "a red butterfly on a blue background" (chapters 8-9), trained by
  ``course_utils.train_text_to_image``.
- ``tiny-sd3-butterflies``: a tiny Stable Diffusion 3 (an MM-DiT by flow matching on ``tiny-sd-butterflies``'
  latents, its text encoder as both CLIPs, no T5; chapter 13), trained by ``course_utils.train_sd3``.

This module is the registry (``load``, ``path``, ``ddim_samples``); ``recipes`` says how each is made. Training
one again and writing its card is the course's machinery, beside the package: ``python -m course_tools.pretrained
--retrain NAME --out FOLDER`` from a clone of the repository (``--in_place`` instead of ``--out`` replaces the
shipped folder; see ``--help``). Each folder holds fp16 safetensors weights, a model card (``README.md``) written
from the run that made it, ``training.json`` (the run's command, device, time, losses) and ``samples.png``.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch
from diffusers import DDPMPipeline

from .recipes import NAMES, RECIPES, Recipe

HERE = Path(__file__).resolve().parent
# What the source course loads from the Hub in place of a shipped pipeline, when online.
HUB_COUNTERPARTS = {"butterflies-32": "johnowhitaker/ddpm-butterflies-32px"}
# Spatial control for a shipped text-to-image pipeline (chapter 11): only the trained part ships (``controlnet/``,
# or the depth design's 5-channel ``unet/``); load() joins it to the base pipeline's other parts.
CONTROLS: dict[str, dict] = {
    "tiny-sd-butterflies-controlnet": dict(
        base="tiny-sd-butterflies", design="controlnet",
        description="a ControlNet for tiny-sd-butterflies: the butterfly where a silhouette (white on black) says"),
    "tiny-sd-butterflies-depth": dict(
        base="tiny-sd-butterflies", design="depth",
        description="Depth2Image for tiny-sd-butterflies: the butterfly where a height map (a fifth U-Net input) "
                    "rises"),
}


def path(name: str) -> Path:
    """The folder of the shipped pipeline ``name``."""
    if name not in (*NAMES, *CONTROLS):
        raise KeyError(f"no pretrained pipeline called {name!r}; the course ships: {', '.join((*NAMES, *CONTROLS))}")
    return HERE / name


def load(name: str, device: torch.device | str = "cpu"):
    """The shipped pipeline ``name`` (weights upcast to float32), loaded offline from the package: a
    ``DDPMPipeline``, a ``StableDiffusionPipeline`` for ``tiny-sd-butterflies``, a ``StableDiffusion3Pipeline`` for
    ``tiny-sd3-butterflies`` (call it with ``max_sequence_length=0``: it has no T5), or a
    ``StableDiffusionControlNetPipeline`` for ``tiny-sd-butterflies-controlnet`` or a
    ``StableDiffusionDepth2ImgPipeline`` for ``tiny-sd-butterflies-depth`` (``CONTROLS``).

    A class-conditioned model comes as the same pipeline container (``.unet``, ``.scheduler``); sample it with
    ``course_utils.sampling.sample_with_guidance`` since ``DDPMPipeline.__call__`` passes no class labels.
    """
    folder = path(name)
    if name in CONTROLS:  # the base pipeline's parts and the trained ControlNet (or 5-channel U-Net)
        from ..controlnet import load_control

        return load_control(CONTROLS[name]["design"], folder, load(CONTROLS[name]["base"])).to(device)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} holds no pipeline; run `python -m course_tools.pretrained --retrain {name}`")
    recipe = RECIPES[name]
    if recipe.data == "clips":  # sound: a course_utils.audio.AudioDiffusion
        from ..audio import AudioDiffusion

        return AudioDiffusion.from_pretrained(folder).to(device)
    if recipe.script == "train_sd3":  # a StableDiffusion3Pipeline without T5: call it with max_sequence_length=0
        from ..sd3 import load_sd3

        with _no_loading_bars():
            return load_sd3(folder).to(device)
    if recipe.text_to_image:
        from diffusers import StableDiffusionPipeline

        cls = StableDiffusionPipeline
    else:
        cls = DDPMPipeline
    with _no_loading_bars():
        pipeline = cls.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


@contextlib.contextmanager
def _no_loading_bars():
    """diffusers' and transformers' loading bars off (the files are local: a bar would only say they were read),
    restored after."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    were_on = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_on[0]:
            diffusers_logging.enable_progress_bar()
        if were_on[1]:
            transformers_logging.enable_progress_bar()


def load_longer_trained(name: str, device: torch.device | str = "cpu") -> tuple[DDPMPipeline, str]:
    """The Hub model the source course uses for ``name`` when online (the learner's data then come from the Hub
    too: photographs, which the shipped model never saw), else the shipped pipeline; returned with a sentence
    saying which one it is."""
    from ..data import use_offline_data
    from ..hub import from_hub

    def shipped() -> tuple[DDPMPipeline, str]:
        return load(name, device), f"{name} (shipped with the course, trained by its script)"

    def hub() -> tuple[DDPMPipeline, str]:
        pipeline = DDPMPipeline.from_pretrained(repo, dtype=torch.float32).to(device)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline, f"{repo} (the source course's model, from the Hub)"

    repo = HUB_COUNTERPARTS.get(name)
    if repo and not use_offline_data():
        try:
            return from_hub(repo, hub, shipped)  # a deleted repository: one line, then the shipped pipeline
        except OSError as err:
            warnings.warn(f"loading {repo} failed ({err}); using the shipped {name}.", stacklevel=2)
    return shipped()


def ddim_samples(pipeline: DDPMPipeline, n: int, steps: int = 50, seed: int = 0,
                 labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` samples in [0, 1] (on the CPU) with ``steps`` DDIM steps (steps of its own scheduler for a
    flow-matching or consistency pipeline: Euler, LCM), on the pipeline's device by default (one per label, with
    classifier-free guidance, if ``labels`` are given)."""
    from diffusers import DDIMScheduler, LCMScheduler

    from ..diffusion import is_flow
    from ..sampling import sample_ddpm, sample_with_guidance

    device = device or pipeline.device
    own = is_flow(pipeline.scheduler) or isinstance(pipeline.scheduler, LCMScheduler)
    scheduler = pipeline.scheduler if own else DDIMScheduler.from_config(pipeline.scheduler.config)
    if labels is not None:
        x = sample_with_guidance(pipeline.unet, scheduler, steps, labels, guidance_scale, seed=seed, device=device)
    else:
        x = sample_ddpm(pipeline.unet, scheduler, n, steps, device=device, seed=seed)
    return (x + 1) / 2


def class_names(name: str) -> list[str] | None:
    """The class names of a class-conditioned pipeline (label i means ``names[i]``), or None."""
    file = path(name) / "class_names.json"
    return json.loads(file.read_text()) if file.is_file() else None


__all__ = ["CONTROLS", "HERE", "NAMES", "RECIPES", "Recipe", "class_names", "ddim_samples", "load",
           "load_longer_trained", "path"]
