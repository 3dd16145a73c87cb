"""Shared helpers for the diffusion-models course: config, data, viz, hub (one concern per module)."""

from .config import chapter_config, get_device, get_profile, seed_everything
from .viz import make_grid, plot_losses, plot_schedules, show_images

__all__ = [
    "chapter_config",
    "get_device",
    "get_profile",
    "make_grid",
    "plot_losses",
    "plot_schedules",
    "seed_everything",
    "show_images",
]
