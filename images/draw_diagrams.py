"""Draw the course's diagrams into images/: the sampling pipeline, chapter 1's BasicUNet, one DDIM step
(chapters 6 and 9), chapter 7's guidance, the parts of Stable Diffusion (chapter 8), DDIM inversion (chapter 9), a
DiT block and an MM-DiT block (chapter 13).

    python images/draw_diagrams.py
"""

from __future__ import annotations

import sys
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
    """Save through a temporary file, then rename (``course_utils.files.atomic_file``): never half an image."""
    sys.path.insert(0, str(HERE.parent))  # the repository's course_utils, as images/embed.py finds it
    from course_utils.files import atomic_file

    path = HERE / name
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)
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


def guidance() -> Path:
    """Chapter 7: classifier-free guidance as vectors, and loss guidance's nudge of x_t before the scheduler's step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax in (left, right):
        ax.set_aspect("equal")
        ax.axis("off")
    # Left: eps_u + s (eps_c - eps_u) walks along the line from eps_u through eps_c, past it for s > 1.
    left.set(xlim=(-0.3, 6.2), ylim=(-0.5, 4.6), title="classifier-free guidance")
    origin, eps_u, eps_c = (0.0, 0.0), (2.6, 0.6), (3.2, 1.6)
    for s, colour, name in ((0, "gray", "s = 0: ε_u (told \"no class\")"),
                            (1, "tab:blue", "s = 1: ε_c (told the label)"),
                            (3, "tab:red", "s = 3: ε_u + 3·(ε_c − ε_u)")):
        tip = (eps_u[0] + s * (eps_c[0] - eps_u[0]), eps_u[1] + s * (eps_c[1] - eps_u[1]))
        left.add_patch(FancyArrowPatch(origin, tip, arrowstyle="-|>", mutation_scale=14, lw=1.8, color=colour))
        left.text(tip[0] + 0.12, tip[1] - 0.08, name, fontsize=9, color=colour, va="center")
    left.plot([eps_u[0], eps_u[0] + 3.6 * (eps_c[0] - eps_u[0])], [eps_u[1], eps_u[1] + 3.6 * (eps_c[1] - eps_u[1])],
              ls=":", color="black", lw=1)
    left.add_patch(FancyArrowPatch(eps_u, eps_c, arrowstyle="-|>", mutation_scale=10, lw=1.2, ls="--", color="black"))
    left.text(3.0, 0.95, "ε_c − ε_u", fontsize=9, ha="left")
    left.text(2.9, -0.35, "the model's prediction at x_t (ε, or v: the mix is the same)", fontsize=8, ha="center",
              style="italic")
    # Right: x_t moves against the gradient of loss(x0_hat(x_t)), then the scheduler steps from there.
    right.set(xlim=(-0.2, 6.4), ylim=(-0.5, 4.6), title="loss guidance")
    for r in (0.4, 0.8, 1.2, 1.6):  # level sets of the loss, centred where the loss is lowest
        right.add_patch(matplotlib.patches.Ellipse((4.6, 3.6), 2 * r, 1.2 * r, fill=False, color="tab:green", lw=0.8))
    right.text(4.6, 3.6, "low loss", fontsize=8, ha="center", va="center", color="tab:green")
    x_t, nudged, x_prev, plain = (1.2, 1.2), (2.1, 2.0), (3.0, 1.0), (2.1, 0.2)
    right.plot(*x_t, "ko")
    right.text(x_t[0] - 0.1, x_t[1] + 0.25, "x_t", fontsize=10, ha="right")
    right.add_patch(FancyArrowPatch(x_t, nudged, arrowstyle="-|>", mutation_scale=14, lw=1.8, color="tab:red"))
    right.text(-0.1, 2.75, "nudge: x_t − s·∇ loss(x̂_0(x_t))\n(the gradient runs back\nthrough the U-Net)", fontsize=8,
               color="tab:red")
    right.add_patch(FancyArrowPatch(nudged, x_prev, arrowstyle="-|>", mutation_scale=14, lw=1.8, color="tab:blue"))
    right.text(2.75, 1.7, "scheduler.step", fontsize=8, color="tab:blue")
    right.plot(*x_prev, "o", color="tab:blue")
    right.text(x_prev[0] + 0.15, x_prev[1] - 0.05, "x_{t−1}", fontsize=10)
    right.add_patch(FancyArrowPatch(x_t, plain, arrowstyle="-|>", mutation_scale=10, lw=1, ls="--", color="gray"))
    right.text(plain[0] + 0.1, plain[1] - 0.2, "unguided step", fontsize=8, color="gray")
    right.text(3.1, -0.35, "x̂_0 = the clean image predicted from x_t; the loss scores it", fontsize=8, ha="center",
               style="italic")
    return save(fig, "guidance.png")


def ddim_step() -> Path:
    """One DDIM step: x_t -> (predicted x_0, predicted noise) -> x_t' going down; the same step upwards inverts."""
    fig, ax = plt.subplots(figsize=(10, 4.6))
    ax.set(xlim=(0, 10), ylim=(0, 4.6))
    ax.axis("off")
    box(ax, 3.0, 3.75, 4.0, 0.6, "x_t   (noise level t)\nthe U-Net reads it: ε̂ or v̂ = U-Net(x_t, t)", "#dddddd")
    box(ax, 1.3, 2.05, 3.3, 0.75, "x̂₀ = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t\npredicted clean image", "#d4edda")
    box(ax, 5.4, 2.05, 3.3, 0.75, "ε̂   predicted noise\n(from v: ε̂ = √ᾱ_t v̂ + √(1−ᾱ_t) x_t)", "#cfe2ff")
    box(ax, 3.0, 0.45, 4.0, 0.75, "x_t' = √ᾱ_t' x̂₀ + √(1−ᾱ_t') ε̂\nno fresh noise (eta = 0)", "#ffe5b4")
    arrow(ax, (4.2, 3.75), (3.0, 2.8))
    arrow(ax, (5.8, 3.75), (7.0, 2.8))
    arrow(ax, (3.0, 2.05), (4.2, 1.2))
    arrow(ax, (7.0, 2.05), (5.8, 1.2))
    ax.text(5.0, 1.6, "both put together again\nat the level of t'", ha="center", va="center", fontsize=8)
    ax.add_patch(FancyArrowPatch((0.7, 3.9), (0.7, 0.8), arrowstyle="-|>", mutation_scale=14, lw=2, color="#b35900"))
    ax.text(0.55, 2.35, "sampling: t' < t\n(this chapter)", ha="right", va="center", fontsize=9, color="#b35900",
            rotation=90)
    ax.add_patch(FancyArrowPatch((9.3, 0.8), (9.3, 3.9), arrowstyle="-|>", mutation_scale=14, lw=2, color="#1f5fa8"))
    ax.text(9.45, 2.35, "inversion: t' > t, the same step\nrun upwards (chapter 9)", ha="left", va="center",
            fontsize=9, color="#1f5fa8", rotation=90)
    ax.text(5.0, 0.1, "DDIM (Song et al., 2020): the model is called once per step; t' may be many levels away",
            ha="center", fontsize=9, style="italic")
    return save(fig, "ddim_step.png")


def sd_parts() -> Path:
    """Chapter 8: the parts of Stable Diffusion and its sampling loop, with the shapes of the course's tiny SD."""
    fig, ax = plt.subplots(figsize=(11.5, 5.6))
    ax.set(xlim=(0, 11.5), ylim=(-0.8, 5.0))
    ax.axis("off")
    # the text: prompt -> tokenizer -> text encoder
    box(ax, 0.1, 4.1, 2.3, 0.7, 'prompt "a red butterfly"\nand the empty prompt ""', "#eeeeee")
    box(ax, 3.0, 4.1, 2.1, 0.7, "CLIPTokenizer\nids (2, 16)  [77]", "#e2d4f0")
    box(ax, 5.7, 4.1, 3.1, 0.7, "CLIPTextModel\nembeddings (2, 16, 64)  [77, 768]", "#e2d4f0")
    arrow(ax, (2.4, 4.45), (3.0, 4.45))
    arrow(ax, (5.1, 4.45), (5.7, 4.45))
    # the loop: latents -> U-Net -> guidance -> scheduler step, and round again
    box(ax, 0.1, 2.3, 2.0, 0.8, "seeded noise x_T\nlatents (1, 4, 8, 8)\n[4, 64, 64]", "#dddddd")
    box(ax, 2.7, 2.2, 2.4, 1.0,
        "UNet2DConditionModel\n(two copies of x_t, t)\ncross-attention reads\nthe text embeddings", "#cfe2ff")
    box(ax, 6.0, 2.3, 2.8, 0.8, "classifier-free guidance\nε = ε(∅) + s·(ε(prompt) − ε(∅))", "#fff3bf")
    box(ax, 9.4, 2.3, 2.0, 0.8, "scheduler.step(ε, t, x_t)\n→ x at the next\ntimestep (1, 4, 8, 8)", "#ffe5b4")
    arrow(ax, (2.1, 2.7), (2.7, 2.7))
    arrow(ax, (5.1, 2.7), (6.0, 2.7))
    ax.text(5.55, 2.78, "ε̂ (2, 4, 8, 8)", ha="center", va="bottom", fontsize=7)
    arrow(ax, (8.8, 2.7), (9.4, 2.7))
    ax.add_patch(FancyArrowPatch((7.25, 4.1), (4.2, 3.2), arrowstyle="-|>", mutation_scale=12, lw=1.2,
                                 connectionstyle="arc3,rad=-0.15", color="#6a3d9a"))
    ax.text(6.5, 3.5, "encoder_hidden_states (2, 16, 64)", fontsize=8, color="#6a3d9a")
    ax.add_patch(FancyArrowPatch((10.0, 2.3), (3.9, 2.2), connectionstyle="arc3,rad=-0.3", arrowstyle="-|>",
                                 mutation_scale=12, lw=1.2))
    ax.text(7.0, 1.05, "repeat for t in scheduler.timesteps (981, 961, ..., 1 for 50 DDIM steps)",
            ha="center", fontsize=8)
    # the end: the VAE's decoder; its encoder is where img2img starts
    box(ax, 9.4, -0.7, 2.0, 0.9, "AutoencoderKL decoder\n(latents / scaling_factor)\nimage (3, 32, 32)\n[3, 512, 512]",
        "#d4edda")
    arrow(ax, (11.0, 2.3), (11.0, 0.2))
    ax.text(11.1, 1.25, "after the last step", fontsize=8, rotation=90, va="center")
    box(ax, 0.1, -0.7, 3.7, 0.9, "AutoencoderKL encoder (× scaling_factor):\nimage → latents, where img2img and\n"
        "inpainting start (and what training reads)", "#eef7ee")
    ax.text(6.2, -0.3, "shapes: the course's tiny-sd-butterflies\n[in brackets: Stable Diffusion 1.x]",
            ha="center", fontsize=8, style="italic")
    return save(fig, "sd_parts.png")


def ddim_inversion() -> Path:
    """Chapter 9: sampling walks the timesteps down, inversion walks them up; partial inversion turns at start_step."""
    fig, ax = plt.subplots(figsize=(10, 4.4))
    ax.set(xlim=(-0.9, 11.2), ylim=(-0.1, 4.4))
    ax.axis("off")
    steps = [1 + 100 * i for i in range(10)]  # 10 DDIM steps: t = 1, 101, ..., 901
    x = {t: 0.5 + t / 100 for t in steps}
    ax.plot([0.3, 10.4], [0.5, 0.5], color="black", lw=1)
    for t in steps:
        ax.plot([x[t]] * 2, [0.43, 0.57], color="black", lw=1)
        ax.text(x[t], 0.2, str(t), ha="center", fontsize=8)
    ax.text(5.3, -0.05, "timestep t (10 DDIM steps of 1,000)", ha="center", fontsize=8)
    ax.text(-0.85, 0.5, "image\n(clean)", fontsize=8, va="center")
    ax.text(10.5, 0.5, "noise", fontsize=8, va="center")
    rows = [(3.6, "sampling: from x_T down to the image (chapter 6)", "#ffe5b4", steps[::-1]),
            (2.6, "inversion: from the image up to x_T; each step x_next = √ᾱ_next·x̂₀ + √(1 − ᾱ_next)·ε̂, "
             "with ε̂ predicted at the current point x_t", "#cfe2ff", steps)]
    for y, label, colour, path in rows:
        for a, b in zip(path[:-1], path[1:], strict=True):
            ax.add_patch(FancyArrowPatch((x[a], y), (x[b], y), arrowstyle="-|>", mutation_scale=10, lw=1.3,
                                         color="black", shrinkA=3, shrinkB=3))
        ax.scatter([x[t] for t in path], [y] * len(path), s=28, color=colour, edgecolor="black", zorder=3)
        ax.text(0.3, y + 0.22, label, fontsize=9)
    start = 601  # start_step = 3 of 10: stop three steps below the top
    up = [t for t in steps if t <= start]
    y = 1.75
    for a, b in zip(up[:-1], up[1:], strict=True):
        ax.add_patch(FancyArrowPatch((x[a], y), (x[b], y), arrowstyle="-|>", mutation_scale=10, lw=1.3,
                                     color="#1f4e9c", shrinkA=3, shrinkB=3))
    ax.add_patch(FancyArrowPatch((x[start], y - 0.05), (x[1], y - 0.08), connectionstyle="arc3,rad=-0.15",
                                 arrowstyle="-|>", mutation_scale=12, lw=1.5, color="#c0392b"))
    ax.scatter([x[t] for t in up], [y] * len(up), s=28, color="#cfe2ff", edgecolor="black", zorder=3)
    ax.text(x[start] + 0.15, y + 0.12, "start_step = 3: stop at t = 601", fontsize=9, color="#1f4e9c")
    ax.text(x[start] + 0.15, y - 0.25, "and sample back down with the new prompt (guided)", fontsize=9,
            color="#c0392b")
    ax.text(0.3, y + 0.22, "partial inversion (the editing trick)", fontsize=9)
    return save(fig, "ddim_inversion.png")


def dit_blocks() -> Path:
    """Chapter 13: a DiT block (adaLN-Zero: shift, scale, gate from the conditioning vector) beside an MM-DiT block
    (two streams with their own weights, one joint attention)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6.2), gridspec_kw=dict(width_ratios=[1, 1.45]))
    for ax in (left, right):
        ax.axis("off")
    left.set(xlim=(0, 5.2), ylim=(0, 10.4), title="DiT block (chapter 13's TinyDiT, diffusers' DiTTransformer2DModel)")
    grey, blue, yellow, green = "#eeeeee", "#cfe2ff", "#fff3bf", "#d4edda"
    box(left, 0.2, 0.2, 3.0, 0.6, "tokens x (N, T, W)", grey)
    steps = [(1.3, "LayerNorm (no weights)", grey), (2.2, "× (1 + scale₁) + shift₁", yellow),
             (3.1, "self-attention over the T tokens", blue), (4.0, "× gate₁, then + x", yellow),
             (5.3, "LayerNorm (no weights)", grey), (6.2, "× (1 + scale₂) + shift₂", yellow),
             (7.1, "MLP on each token", green), (8.0, "× gate₂, then + x", yellow)]
    for y, text, colour in steps:
        box(left, 0.2, y, 3.0, 0.6, text, colour)
    for (y0, *_), (y1, *_) in zip([(0.2,)] + steps[:-1], steps, strict=True):
        arrow(left, (1.7, y0 + 0.6), (1.7, y1))
    box(left, 0.2, 9.2, 3.0, 0.6, "tokens out: the same shape", grey)
    arrow(left, (1.7, 8.6), (1.7, 9.2))
    box(left, 3.6, 4.2, 1.4, 1.6, "c = MLP(t)\n+ label row\n→ Linear\n→ 6 vectors", yellow)
    for y in (2.5, 4.3, 6.5, 8.3):
        left.add_patch(FancyArrowPatch((3.6, 5.0), (3.2, y), arrowstyle="-|>", mutation_scale=10, lw=0.9,
                                       color="#9c7a00"))
    left.text(2.5, -0.2, "adaLN-Zero: the Linear starts at zero, so gate = 0 and the block starts as the identity",
              ha="center", fontsize=8, style="italic")

    right.set(xlim=(0, 8.6), ylim=(0, 10.4), title="MM-DiT block (SD3's SD3Transformer2DModel)")
    for x, name, colour in ((0.1, "image tokens (N, T, W)", blue), (5.2, "caption tokens (N, L, W)", "#e2d4f0")):
        box(right, x, 0.2, 3.3, 0.6, name, colour)
        box(right, x, 1.3, 3.3, 0.6, "LayerNorm, modulate", yellow)
        box(right, x, 2.4, 3.3, 0.6, "own Q, K, V projections", colour)
        box(right, x, 5.2, 3.3, 0.6, "own output proj., × gate, +", colour)
        box(right, x, 6.3, 3.3, 0.6, "modulate, own MLP, × gate, +", yellow)
        box(right, x, 7.6, 3.3, 0.6, name.split(" (")[0] + " out", colour)
        for y0, y1 in ((0.8, 1.3), (1.9, 2.4), (5.8, 6.3), (6.9, 7.6)):
            arrow(right, (x + 1.65, y0), (x + 1.65, y1))
    box(right, 1.9, 3.6, 4.8, 0.8, "one attention over all T + L tokens\n(Q, K, V of both streams concatenated)",
        green)
    arrow(right, (1.75, 3.0), (2.9, 3.6))
    arrow(right, (6.85, 3.0), (5.7, 3.6))
    arrow(right, (2.9, 4.4), (1.75, 5.2), "T")
    arrow(right, (5.7, 4.4), (6.85, 5.2), "L")
    box(right, 3.0, 8.9, 2.6, 1.0, "c = MLP(t)\n+ pooled caption\n(modulates both streams)", yellow)
    for x in (1.75, 6.85):  # the conditioning modulates every LayerNorm of both streams (drawn: to the top ones)
        right.add_patch(FancyArrowPatch((4.3, 8.9), (x, 6.9), arrowstyle="-|>", mutation_scale=10, lw=0.9,
                                        color="#9c7a00"))
    right.text(4.3, -0.2, "no cross-attention: words and patches meet in the joint attention", ha="center",
               fontsize=8, style="italic")
    return save(fig, "dit_blocks.png")


if __name__ == "__main__":
    for path in (pipeline(), basic_unet(), guidance(), ddim_step(), sd_parts(), ddim_inversion(), dit_blocks()):
        print("wrote", path)
