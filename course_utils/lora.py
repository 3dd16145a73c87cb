"""LoRA adapters on a UNet2DModel (chapter 6), through ``peft``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import UNet2DModel

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")


def add_lora(unet: UNet2DModel, rank: int = 8, targets: Sequence[str] = LORA_TARGETS, seed: int = 0):
    """Wrap a UNet2DModel with LoRA adapters (``peft``) on its attention projections and resnet convolutions.

    Returns the ``peft.PeftModel``: only the adapters train, the base weights are frozen; ``save_pretrained``
    writes the adapters alone, ``merge_and_unload()`` folds them into the base weights. The wrapped UNet is
    changed in place (its layers now carry the adapters).
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # the adapters' A matrices start random (B starts at zero: no change at first)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), lora_dropout=0.0)
    return get_peft_model(unet, config)

