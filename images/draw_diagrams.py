"""Draw the course's diagrams into images/: the sampling pipeline and chapter 1's BasicUNet.

    python images/draw_diagrams.py
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent


def box(ax, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    """A rounded box with centred text."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="black", lw=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
    """An arrow with an optional label above its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.04, text, ha="center", fontsize=8)


def save(fig: plt.Figure, name: str) -> Path:
    """Save through a temporary file, then rename: a crash never leaves half an image."""
    path = HERE / name
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def pipeline() -> Path:
    """The sampling loop: noise, the U-Net's prediction, the scheduler's step, repeated T times."""
    fig, ax = plt.subplots(figsize=(10, 2.6))
    ax.set(xlim=(0, 10), ylim=(0, 2.2))
    ax.axis("off")
    box(ax, 0.1, 0.8, 1.4, 0.6, "x_T ~ N(0, I)\npure noise", "#dddddd")
    box(ax, 2.3, 0.8, 1.9, 0.6, "UNet2DModel(x_t, t)\npredicts ε (or v)", "#cfe2ff")
    box(ax, 5.0, 0.8, 2.0, 0.6, "scheduler.step(·, t, x_t)\n→ x_{t-1}", "#ffe5b4")
    box(ax, 8.1, 0.8, 1.7, 0.6, "x_0\nthe image", "#d4edda")
    arrow(ax, (1.5, 1.1), (2.3, 1.1))
    arrow(ax, (4.2, 1.1), (5.0, 1.1), "ε̂ or v̂")
    arrow(ax, (7.0, 1.1), (8.1, 1.1), "after t = 0")
    ax.add_patch(FancyArrowPatch((6.0, 1.4), (3.25, 1.4), connectionstyle="arc3,rad=0.5", arrowstyle="-|>",
                                 mutation_scale=12, lw=1.2))
    ax.text(4.6, 2.0, "repeat for t = T-1, ..., 0 (scheduler.timesteps)", ha="center", fontsize=8)
    ax.text(5.0, 0.35, "DDPMPipeline = this loop: a U-Net + a scheduler", ha="center", fontsize=9, style="italic")
    return save(fig, "pipeline.png")


def basic_unet() -> Path:
    """Chapter 1's BasicUNet: 3 convolutions down, 3 up, skip connections added."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.set(xlim=(0, 10), ylim=(0, 3.6))
    ax.axis("off")
    down = [("conv 1→32\n28×28", 3.0), ("conv 32→64\n14×14", 2.0), ("conv 64→64\n7×7", 1.0)]
    up = [("conv 64→64\n7×7", 1.0), ("conv 64→32\n14×14", 2.0), ("conv 32→1\n28×28", 3.0)]
    for i, (text, y) in enumerate(down):
        box(ax, 0.5 + i * 1.5, y - 0.3, 1.3, 0.6, text, "#cfe2ff")
        if i:
            arrow(ax, (0.5 + (i - 1) * 1.5 + 0.65, y + 0.7), (0.5 + i * 1.5 + 0.65, y + 0.3), "pool")
    for i, (text, y) in enumerate(up):
        box(ax, 5.2 + i * 1.5, y - 0.3, 1.3, 0.6, text, "#ffe5b4")
        if i:
            arrow(ax, (5.2 + (i - 1) * 1.5 + 0.65, y - 0.7), (5.2 + i * 1.5 + 0.65, y - 0.3), "upsample")
    arrow(ax, (3.5 + 1.3, 1.0), (5.2, 1.0))
    for (_, y), xs, xe in [(down[0], 1.8, 8.2), (down[1], 3.3, 6.7)]:
        ax.plot([xs, xe], [y + 0.42, y + 0.42], ls="--", color="gray")
        ax.text((xs + xe) / 2, y + 0.47, "skip: added (+)", ha="center", fontsize=8, color="gray")
    ax.text(5, 0.15, "5×5 convolutions, padding 2, SiLU; output shape = input shape; 309,057 parameters",
            ha="center", fontsize=9, style="italic")
    return save(fig, "basic_unet.png")


if __name__ == "__main__":
    for path in (pipeline(), basic_unet()):
        print("wrote", path)
