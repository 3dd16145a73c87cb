"""Checking a folder of images before training on it, and converting odd image modes to RGB."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class BadImagesError(ValueError):
    """Raised when a folder holds images that cannot be opened; ``.bad`` maps each path to its reason."""

    def __init__(self, message: str, bad: dict[Path, str]):
        super().__init__(message)
        self.bad = bad


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB copy of any PIL image: alpha over white, palettes expanded, 16-bit scaled down."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit (or 32-bit integer) grayscale: scale 0..65535 to 0..255 instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(values / 257.0, 0, 255).round().astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        span = max(values.max() - values.min(), 1e-12)
        return Image.fromarray(((values - values.min()) / span * 255).round().astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _problem(path: Path) -> str | None:
    """Return why ``path`` cannot be used as an image, or None when it decodes completely."""
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel, so truncated files fail here and not mid-training
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def check_image_folder(folder: str | Path, skip_bad: bool = False) -> list[Path]:
    """Return the usable image files under ``folder``; name every unreadable one (error, or warning if skipping)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder; check the path.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(
            f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {folder}; "
            "put your images there (subfolders are fine)."
        )
    bad = {p: why for p in files if (why := _problem(p)) is not None}
    if bad:
        listing = ", ".join(f"{p.relative_to(folder)} ({why})" for p, why in bad.items())
        if not skip_bad:
            raise BadImagesError(
                f"{len(bad)} of {len(files)} files in {folder} could not be opened: {listing} "
                "-- remove or replace them, or pass skip_bad=True (--skip_bad_images) to leave them out.",
                bad,
            )
        warnings.warn(f"skipping {len(bad)} unreadable file(s) in {folder}: {listing}", stacklevel=2)
    return [p for p in files if p not in bad]
