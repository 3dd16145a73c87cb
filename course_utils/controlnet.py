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
from pathlib import Path

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


# ---- Depth2Image: the condition as an extra input channel of the U-Net ------------------------------------


def depth_maps(controls: torch.Tensor) -> torch.Tensor:
    """A height field for each silhouette: 0 on the background, rising by one for each pixel step inside the
    edge (so highest in the middle of each wing), divided by its maximum — the depth-like map the chapter's
    Depth2Image reads. Controls (N, 3, H, W) in [0, 1] (white = butterfly); returns (N, H, W) in [0, 1]."""
    inside = (controls.float().mean(dim=1, keepdim=True) > 0.5).float()
    height = torch.zeros_like(inside)
    while inside.any():  # peel the shape one pixel at a time (a 3x3 erosion) and count the layers
        height += inside
        inside = -torch.nn.functional.max_pool2d(-inside, 3, stride=1, padding=1)
    return (height / height.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1)).squeeze(1)


def depth_condition(depth: torch.Tensor, latent_size: int) -> torch.Tensor:
    """What ``StableDiffusionDepth2ImgPipeline.prepare_depth_map`` makes of ``depth_map=`` (N, H, W): resized
    (bicubic) to the latents' size, then each map stretched to [-1, 1]. The training step uses the same."""
    x = torch.nn.functional.interpolate(depth.unsqueeze(1).float(), size=(latent_size, latent_size), mode="bicubic",
                                        align_corners=False)
    low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return 2.0 * (x - low) / (high - low) - 1.0


def depth_unet(unet):
    """A copy of the text-to-image ``unet`` that takes one more input channel (``in_channels`` 4 + 1), the
    depth map: the new channel's input weights start at zero, so before training it draws what ``unet`` draws."""
    from diffusers import UNet2DConditionModel

    config = dict(unet.config)
    config["in_channels"] = unet.config.in_channels + 1
    out = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    old = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat([old, torch.zeros_like(old[:, :1])], dim=1)
    out.load_state_dict(state)
    return out.to(unet.device)


def depth_loss(unet, noise_scheduler, latents: torch.Tensor, text: torch.Tensor, depth: torch.Tensor,
               noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One Depth2Image training step's loss: the depth condition (``depth_condition``) concatenated to the noisy
    latents as a fifth channel; the whole U-Net learns to predict the noise."""
    noisy = noise_scheduler.add_noise(latents, noise, t)
    pred = unet(torch.cat([noisy, depth_condition(depth, latents.shape[-1]).to(noisy.dtype)], dim=1), t,
                encoder_hidden_states=text).sample
    return torch.nn.functional.mse_loss(pred.float(), noise)


def depth_pipeline(pipeline, unet):
    """A ``StableDiffusionDepth2ImgPipeline`` with ``pipeline``'s VAE, text encoder and scheduler and the 5-channel
    ``unet``; no depth estimator (the maps are given: ``depth_map=``)."""
    from diffusers import StableDiffusionDepth2ImgPipeline

    parts = {k: pipeline.components[k] for k in ("vae", "text_encoder", "tokenizer", "scheduler")}
    out = StableDiffusionDepth2ImgPipeline(**parts, unet=unet, depth_estimator=None, feature_extractor=None)
    out.set_progress_bar_config(disable=True)
    return out


def sample_controlled(pipeline, prompts: list[str], controls: torch.Tensor, guidance_scale: float = 5.0,
                      steps: int = 20, seed: int = 0, **kwargs) -> torch.Tensor:
    """Samples that should follow ``controls`` (silhouettes (N, 3, H, W)) from either design: a ControlNet
    pipeline gets them as ``image=``; a Depth2Image pipeline gets their height fields (``depth_maps``) as
    ``depth_map=``, and, to start from (``strength=1``: noise, the image all but drowned), a grey image."""
    from diffusers import StableDiffusionDepth2ImgPipeline

    from .tiny_sd import generate

    if isinstance(pipeline, StableDiffusionDepth2ImgPipeline):
        kwargs = dict(image=torch.full_like(controls, 0.5), depth_map=depth_maps(controls), strength=1.0, **kwargs)
    else:
        kwargs = dict(image=controls, **kwargs)
    return generate(pipeline, prompts, guidance_scale, steps, seed, **kwargs)


# ---- The two designs, for the script, the model cards and pretrained.load ---------------------------------

MODEL_FOLDERS = {"controlnet": "controlnet", "depth": "unet"}  # where each design's trained model is saved


def load_control(design: str, folder, base, dtype: torch.dtype = torch.float32):
    """The pipeline of ``design`` with the model saved in ``folder / MODEL_FOLDERS[design]`` joined to the
    text-to-image pipeline ``base``: a ControlNet pipeline, or a Depth2Image pipeline."""
    return control_pipeline(design, base, model_class(design).from_pretrained(
        Path(folder) / MODEL_FOLDERS[design], dtype=dtype, use_safetensors=True))


def model_class(design: str):
    """The diffusers class of what ``design`` trains: ``ControlNetModel`` or (depth) ``UNet2DConditionModel``."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    return UNet2DConditionModel if design == "depth" else ControlNetModel


def control_pipeline(design: str, base, model):
    """``controlnet_pipeline`` or ``depth_pipeline`` of ``base`` and the trained ``model``, by ``design``."""
    return (depth_pipeline if design == "depth" else controlnet_pipeline)(base, model)
