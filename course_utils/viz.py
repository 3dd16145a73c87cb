"""Pictures of what the course computes: image grids, loss curves, noise-schedule curves, a live explorer."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from diffusers.utils import make_image_grid
from PIL import Image


def show_images(
    x: torch.Tensor, nrow: int = 8, value_range: tuple[float, float] = (-1.0, 1.0), min_width: int = 512
) -> Image.Image:
    """Turn a batch (B, C, H, W) or one image (C, H, W) with values in ``value_range`` into one PIL grid.

    Values outside the range are clipped. Small grids are enlarged (nearest neighbour, whole-number
    factor) until at least ``min_width`` pixels wide, so 28-pixel digits stay visible.
    """
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"show_images takes a (B, C, H, W) batch or a (C, H, W) image, got shape {tuple(x.shape)}")
    lo, hi = value_range
    x = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    grid = torchvision.utils.make_grid(x, nrow=nrow, padding=2, pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = Image.fromarray(array[:, :, 0] if x.shape[1] == 1 else array)  # grayscale stays one channel
    factor = max(1, -(-min_width // image.width))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return image


def make_grid(images: Sequence[Image.Image], cols: int | None = None, size: int | None = None) -> Image.Image:
    """Lay PIL images out in a grid (one row by default), each resized to ``size`` if given."""
    if not images:
        raise ValueError("make_grid got no images")
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    images = list(images) + [Image.new(images[0].mode, images[0].size, "white")] * (rows * cols - len(images))
    return make_image_grid(images, rows=rows, cols=cols, resize=size)


def plot_losses(
    losses: Sequence[float] | Mapping[str, Sequence[float]], title: str = "Training loss", xlabel: str = "step"
) -> plt.Figure:
    """Plot one loss curve (or several, by name) on linear and log axes side by side; return the figure."""
    curves = losses if isinstance(losses, Mapping) else {"loss": losses}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, values in curves.items():
        for ax in axes:
            ax.plot(np.arange(1, len(values) + 1), list(values), label=name)
    axes[0].set_title(f"{title} (linear)")
    axes[1].set_title(f"{title} (log)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_schedules(alphas_cumprod: Mapping[str, torch.Tensor]) -> plt.Figure:
    """Plot sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) and log-SNR against t for named schedules."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, abar in alphas_cumprod.items():
        abar = abar.detach().double().cpu()
        t = np.arange(len(abar))
        axes[0].plot(t, abar.sqrt().numpy(), label=name)
        axes[1].plot(t, (1 - abar).sqrt().numpy(), label=name)
        axes[2].plot(t, (abar / (1 - abar)).log().numpy(), label=name)
    titles = ["signal: sqrt(alpha_bar_t)", "noise: sqrt(1 - alpha_bar_t)", "log SNR = log(alpha_bar / (1 - alpha_bar))"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("timestep t")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def explorer(draw: Callable[..., plt.Figure], **controls):
    """A live picture of ``draw(**values)``: an ipywidgets box with the ``controls`` (sliders, dropdowns, keyed by
    ``draw``'s argument names) above the figure, drawn again whenever a control's value changes.

    It redraws an ``Image`` widget rather than using ``interact``, whose output capture can deadlock headless runs
    such as nbconvert (nbclient issue #312).
    """
    import ipywidgets as widgets

    def png() -> bytes:
        fig = draw(**{name: control.value for name, control in controls.items()})
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()

    view = widgets.Image(value=png(), format="png")

    def update(_change) -> None:
        view.value = png()

    for control in controls.values():
        control.observe(update, "value")
    return widgets.VBox([widgets.HBox(list(controls.values())), view])
