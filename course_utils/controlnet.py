"""ControlNet on the course's tiny Stable Diffusion (chapter 11): posed drawings, their controls, the IoU.

- ``posed_butterfly``: a drawn butterfly (the wings, spots and colours of ``data.synthetic_butterfly``) moved
  anywhere in the frame, shrunk or grown, turned and flipped upside down, together with its control image:
  the silhouette, white on black, 3 channels, at the image size. Because the pose varies this much, following
  the control is something a model has to learn: the average layout does not match it.
- ``silhouette_iou``: how well a sample obeys a silhouette: the sample's butterfly mask (every pixel away from
  its background colour, ``metrics.butterfly_mask``) against the control's white pixels, intersection over union.
- ``controlnet_pipeline``: a ``StableDiffusionControlNetPipeline`` from a text-to-image pipeline and a ControlNet.

``course_utils.train_controlnet`` trains the ControlNet; ``course_utils.pretrained.load(
"tiny-sd-butterflies-controlnet")`` loads the shipped one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from .data import BACKGROUNDS, _jitter, _wing_layer, butterfly_attributes
from .metrics import butterfly_mask

# How far the pose varies (the chapter-8 drawings: scale 0.7-1.0, turned by up to 25 degrees, near the centre).
SCALES = (0.45, 0.95)
MAX_TURN = 75  # degrees either way
UPSIDE_DOWN = 0.25  # share of drawings flipped top to bottom (a left-right flip of a symmetric butterfly shows little)
POSE_SEED_OFFSET = 7  # the pose's random stream, apart from the drawing's own (colours, wings)


def _butterfly_layer(index: int, big: int, seed: int) -> tuple[Image.Image, tuple[int, int, int]]:
    """Wings, body and antennae of butterfly ``index`` on a transparent ``big``-pixel layer; its background colour."""
    attrs = butterfly_attributes(index, seed)
    rng = np.random.default_rng([seed, index, 1])
    background = _jitter(BACKGROUNDS[attrs.background], rng, 8)
    half = _wing_layer(big, attrs, rng)
    wings = Image.alpha_composite(half, half.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    draw = ImageDraw.Draw(wings)
    c, body = big / 2, (int(rng.integers(0, 60)),) * 3 + (255,)
    draw.ellipse([c - big * 0.025, c - big * 0.24, c + big * 0.025, c + big * 0.26], fill=body)
    for side in (-1, 1):
        draw.line([c, c - big * 0.22, c + side * big * 0.12, c - big * 0.4], fill=body, width=max(big // 80, 1))
    return wings, background


def posed_butterfly(index: int, size: int = 32, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """Butterfly ``index`` in a random pose (size, place, turn, flip) and its silhouette: two RGB images.

    The same (index, size, seed) always gives the same pair; the colours are ``butterfly_attributes(index)``'s,
    so the chapter-8 captions describe it."""
    big = size * 4  # draw large, then shrink: smooth edges
    wings, background = _butterfly_layer(index, big, seed)
    pose = np.random.default_rng([seed, index, POSE_SEED_OFFSET])
    if pose.random() < UPSIDE_DOWN:
        wings = wings.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if pose.random() < 0.5:
        wings = wings.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = pose.uniform(*SCALES)
    wings = wings.resize((int(big * scale),) * 2, Image.Resampling.BICUBIC)
    wings = wings.rotate(float(pose.uniform(-MAX_TURN, MAX_TURN)), resample=Image.Resampling.BICUBIC)
    room = (big - wings.width) // 2 + int(0.1 * big)  # the centre moves by up to this: a wing tip may leave the frame
    offset = tuple(int((big - wings.width) // 2 + pose.integers(-room, room + 1)) for _ in range(2))
    canvas = Image.new("RGBA", (big, big), background + (255,))
    canvas.paste(wings, offset, wings)
    image = canvas.filter(ImageFilter.GaussianBlur(radius=big / 256)).convert("RGB")
    alpha = Image.new("L", (big, big), 0)
    alpha.paste(wings.getchannel("A"), offset)
    silhouette = alpha.resize((size, size), Image.Resampling.BOX).point(lambda v: 255 if v >= 128 else 0)
    return image.resize((size, size), Image.Resampling.LANCZOS), silhouette.convert("RGB")


def posed_butterflies(indices: Sequence[int], size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed butterflies ``indices`` and their controls, both (N, 3, size, size) in [0, 1]."""
    pairs = [posed_butterfly(i, size, seed) for i in indices]
    images, controls = (torch.from_numpy(np.stack([np.asarray(p[k]) for p in pairs])).permute(0, 3, 1, 2).float() / 255
                        for k in (0, 1))
    return images, controls


def silhouette_iou(images: torch.Tensor, controls: torch.Tensor, tolerance: float = 0.15) -> torch.Tensor:
    """Per image, the intersection over union of its butterfly (``metrics.butterfly_mask``: pixels away from the
    background colour) with the control's white pixels. Images and controls (N, 3, H, W) in [0, 1]."""
    if images.shape[0] != controls.shape[0] or images.shape[-2:] != controls.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and controls {tuple(controls.shape)}: want the same N, H, W")
    sample = butterfly_mask(images.float().cpu(), tolerance=tolerance)
    target = controls.float().cpu().mean(dim=1) > 0.5
    union = (sample | target).sum(dim=(1, 2)).clamp(min=1)
    return (sample & target).sum(dim=(1, 2)) / union


def controlnet_loss(controlnet, unet, noise_scheduler, latents: torch.Tensor, text: torch.Tensor,
                    controls: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One ControlNet training step's loss: the ControlNet reads the noisy latents, the text and the control and
    returns residuals for the frozen U-Net's skip connections and middle; the U-Net, with them, predicts the noise."""
    noisy = noise_scheduler.add_noise(latents, noise, t)
    down, mid = controlnet(noisy, t, encoder_hidden_states=text, controlnet_cond=controls, return_dict=False)
    pred = unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                mid_block_additional_residual=mid).sample
    return torch.nn.functional.mse_loss(pred.float(), noise)


def controlnet_pipeline(pipeline, controlnet):
    """A ``StableDiffusionControlNetPipeline`` with ``pipeline``'s parts (VAE, text encoder, U-Net, scheduler)
    and ``controlnet``; no safety checker, as the tiny Stable Diffusion has none."""
    from diffusers import StableDiffusionControlNetPipeline

    parts = {k: pipeline.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    out = StableDiffusionControlNetPipeline(**parts, controlnet=controlnet, safety_checker=None,
                                            feature_extractor=None, requires_safety_checker=False)
    out.set_progress_bar_config(disable=True)
    return out
