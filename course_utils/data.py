"""The course's data: MNIST (or offline digits), butterflies (Hub, local folder or offline synthetic).

Every loader returns a ``Source``: the dataset and one sentence saying where it came from, which the
notebooks print so a learner always knows what they are training on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import Dataset, TensorDataset
from torchvision import transforms

from .config import get_profile
from .files import atomic_folder
from .hub import DEFAULT_ENDPOINT, endpoint_address, env_offline, from_hub, hub_endpoint, is_offline
from .imagefolder import check_image_folder, to_rgb

BUTTERFLIES_REPO = "huggan/smithsonian_butterflies_subset"
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror
# The public hosts: the small (test) profile never asks them, only a mirror set in HF_ENDPOINT / COURSE_MNIST_MIRROR
PUBLIC_HOSTS = {endpoint_address(DEFAULT_ENDPOINT), endpoint_address(MNIST_URL)}

__all__ = [
    "BACKGROUNDS",
    "butterfly_attributes",
    "butterfly_transform",
    "ButterflyAttributes",
    "data_dir",
    "decode_images",
    "DeviceBatches",
    "digits_28",
    "first_images",
    "load_butterflies",
    "load_image_folder",
    "load_mnist",
    "mnist_mirror",
    "pipeline_dir",
    "Source",
    "synthetic_butterflies_folder",
    "synthetic_butterfly",
    "unpack",
    "use_offline_data",
    "WING_COLOURS",
    "with_preprocessing",
]


class Source(NamedTuple):
    """A dataset and a sentence naming where it came from."""

    dataset: Any
    description: str


def data_dir() -> Path:
    """Where the course keeps downloads and generated data: ``COURSE_DATA_DIR`` or ~/.cache/diffusion-course."""
    return Path(os.environ.get("COURSE_DATA_DIR", Path.home() / ".cache" / "diffusion-course"))


def pipeline_dir(name: str) -> Path:
    """Where the course saves a trained pipeline called ``name`` (chapter 3 writes it, chapter 4 reads it)."""
    return data_dir() / "pipelines" / name


def use_offline_data(url: str | None = None) -> bool:
    """True when offline mode is asked for or ``url`` (default: the Hub, ``HF_ENDPOINT`` when set) cannot be
    reached; in the ``small`` profile also whenever ``url`` is a public host (huggingface.co, MNIST's): tests go
    online only to a mirror they set up (``make test-online``'s Hub on 127.0.0.1)."""
    url = url or hub_endpoint()
    if env_offline() or (get_profile() == "small" and endpoint_address(url) in PUBLIC_HOSTS):
        return True
    return is_offline(url)


def _chosen_mnist_mirror() -> str | None:
    """``COURSE_MNIST_MIRROR`` (a folder URL holding MNIST's four .gz files) ending in "/", or None when unset."""
    mirror = os.environ.get("COURSE_MNIST_MIRROR", "").strip()
    return (mirror.rstrip("/") + "/") if mirror else None


def mnist_mirror() -> str:
    """Where MNIST is downloaded from: ``COURSE_MNIST_MIRROR`` (a folder URL holding MNIST's four .gz files) when
    set, else torchvision's own mirrors (the first of them)."""
    return _chosen_mnist_mirror() or MNIST_URL


def _download_mnist(root: Path, train: bool, transform) -> Dataset:
    """torchvision's MNIST download, from ``COURSE_MNIST_MIRROR`` alone when it is set.

    A mirror you choose is trusted: torchvision checks its files' format (idx magic numbers, 28x28) but not
    MNIST's checksums, so a mirror may serve fewer images (the test mirror serves the course's digits).
    """
    from torchvision.datasets import MNIST

    mirror = _chosen_mnist_mirror()
    if mirror is None:
        return MNIST(root, train=train, download=True, transform=transform)
    # torchvision's MNIST with the mirror as its only source and no checksums (named MNIST: its folder's name)
    resources = [(name, None) for name, _ in MNIST.resources]
    mirrored = type("MNIST", (MNIST,), {"mirrors": [mirror], "resources": resources})
    return mirrored(root, train=train, download=True, transform=transform)


# --- MNIST, or scikit-learn's bundled digits offline -------------------------------------------------


def digits_28(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """scikit-learn's 1,797 bundled 8x8 digits as MNIST-like 28x28 images in [0, 1] with labels.

    Each digit is upsampled (bicubic) to 20x20 and padded to 28x28, the way MNIST centres its digits in a
    20x20 box. ``split`` is ``train``, ``test`` (a fixed, seeded ``test_fraction`` held out) or ``all``.
    """
    from sklearn.datasets import load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r}: use 'train', 'test' or 'all'")
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(20, 20), mode="bicubic", align_corners=False).clamp(0, 1)
    x = F.pad(x, (4, 4, 4, 4))
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * test_fraction))
    index = {"train": order[n_test:], "test": order[:n_test], "all": order}[split]
    return TensorDataset(x[index], y[index])


def load_mnist(train: bool = True, offline: bool | None = None, signed: bool = False) -> Source:
    """MNIST as (1x28x28 image, label), values in [0, 1] (or [-1, 1] if ``signed``): torchvision, or digits offline."""
    from torchvision.datasets import MNIST

    root = data_dir()
    split = "train" if train else "test"
    to_tensor = transforms.Compose([transforms.ToTensor()] + ([transforms.Normalize([0.5], [0.5])] if signed else []))
    try:  # a copy already on disk is used even offline
        return Source(MNIST(root, train=train, transform=to_tensor), f"MNIST ({split}, from {root})")
    except RuntimeError:
        pass
    if offline is None:
        offline = use_offline_data(mnist_mirror())
    if not offline:
        try:
            dataset = _download_mnist(root, train, to_tensor)
            return Source(dataset, f"MNIST ({split}, downloaded by torchvision from {mnist_mirror()} to {root})")
        except (OSError, RuntimeError) as err:
            warnings.warn(f"MNIST download failed ({err}); falling back to scikit-learn's digits.", stacklevel=2)
    dataset = digits_28(split)
    if signed:
        dataset = TensorDataset(dataset.tensors[0] * 2 - 1, dataset.tensors[1])
    return Source(
        dataset,
        f"offline stand-in for MNIST: scikit-learn's bundled 8x8 handwritten digits, {len(dataset)} images "
        f"({split} split), upsampled to 28x28",
    )


# --- Butterflies: Hub, a local folder, or synthetic ---------------------------------------------------


# The drawings' named attributes: what a caption says and what the butterfly metric reads back.
WING_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "orange": (240, 135, 25), "yellow": (235, 210, 30), "green": (40, 160, 60),
    "blue": (40, 80, 215), "purple": (130, 50, 180), "pink": (240, 110, 180), "brown": (120, 75, 35),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 235), "yellow": (245, 235, 165), "blue": (185, 210, 240), "green": (200, 232, 190),
    "pink": (245, 208, 218), "grey": (185, 185, 185),
}


def article(word: str) -> str:
    """'an' before a vowel, else 'a' (captions: "an orange butterfly")."""
    return "an" if word[0] in "aeiou" else "a"


class ButterflyAttributes(NamedTuple):
    """What butterfly number ``index`` shows: wing and background colour names, spot colour, spot count."""

    wing: str
    background: str
    spots: str
    n_spots: int

    @property
    def caption(self) -> str:
        """The drawing in words, e.g. ``a red butterfly on a blue background`` (``an orange butterfly ...``)."""
        return f"{article(self.wing)} {self.wing} butterfly on a {self.background} background"


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    """A colour moved by up to ``amount`` per channel, so that no two drawings share exact pixels."""
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb)


def butterfly_attributes(index: int, seed: int = 0) -> ButterflyAttributes:
    """The named attributes of butterfly ``index`` (the same ones ``synthetic_butterfly`` draws)."""
    rng = np.random.default_rng([seed, index])
    wings = list(WING_COLOURS)
    wing = wings[int(rng.integers(len(wings)))]
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    spots = [c for c in wings + ["black", "white"] if c != wing][int(rng.integers(len(wings) + 1))]
    return ButterflyAttributes(wing, background, spots, int(rng.integers(1, 4)))


def _wing_layer(size: int, attrs: ButterflyAttributes, rng: np.random.Generator) -> Image.Image:
    """Draw the left half of a butterfly (two wings with edge bands and spots) on a transparent layer."""
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    c = size / 2
    main = _jitter(WING_COLOURS[attrs.wing], rng, 18)
    edge = tuple(int(v * rng.uniform(0.2, 0.45)) for v in main)
    named_spot = {"black": (20, 20, 20), "white": (250, 250, 250)}.get(attrs.spots) or WING_COLOURS[attrs.spots]
    spot = _jitter(named_spot, rng, 18)
    for dy, scale in ((-1, rng.uniform(0.38, 0.46)), (1, rng.uniform(0.26, 0.36))):  # upper, lower wing
        w, h = scale * size, scale * size * rng.uniform(0.65, 0.95)
        cx, cy = c - w * 0.55, c + dy * h * 0.45
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        draw.ellipse(box, fill=edge + (255,))
        band = w * rng.uniform(0.06, 0.11)
        draw.ellipse([box[0] + band, box[1] + band, box[2] - band, box[3] - band], fill=main + (255,))
        for _ in range(attrs.n_spots):
            r = w * rng.uniform(0.05, 0.1)
            sx, sy = cx + rng.uniform(-0.25, 0.2) * w, cy + rng.uniform(-0.25, 0.25) * h
            draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=spot + (255,))
    return layer


NIGHT_SKY = (16, 20, 44)  # the second family's background (chapter 6 fine-tunes on it): never in the first


def _starry_night(big: int, rng: np.random.Generator) -> Image.Image:
    """A dark blue sky with a dozen small pale stars: the background of the night butterflies."""
    canvas = Image.new("RGBA", (big, big), _jitter(NIGHT_SKY, rng, 6) + (255,))
    draw = ImageDraw.Draw(canvas)
    for _ in range(12):
        x, y, r = rng.uniform(0, big), rng.uniform(0, big), big * rng.uniform(0.008, 0.016)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(235, 235, 200, 255))
    return canvas


def synthetic_butterfly(index: int, size: int = 64, seed: int = 0, night: bool = False) -> Image.Image:
    """Draw butterfly number ``index``: symmetric wings, body and antennae on a plain background.

    Its wing and background colours are named (``butterfly_attributes(index, seed)``), so captions and the
    butterfly metric know what is in each picture. The same (index, size, seed) always gives the same
    picture, so any count is a prefix of a larger one. ``night=True`` draws the second family, night
    butterflies: the same wings on a starry night sky instead of the named background.
    """
    attrs = butterfly_attributes(index, seed)
    rng = np.random.default_rng([seed, index, 1])
    big = size * 4  # draw large, then shrink: smooth edges
    if night:
        canvas = _starry_night(big, np.random.default_rng([seed, index, 2]))
    else:
        canvas = Image.new("RGBA", (big, big), _jitter(BACKGROUNDS[attrs.background], rng, 8) + (255,))
    half = _wing_layer(big, attrs, rng)
    mirrored = half.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    wings = Image.alpha_composite(half, mirrored)
    draw = ImageDraw.Draw(wings)
    c, body = big / 2, (int(rng.integers(0, 60)),) * 3 + (255,)
    draw.ellipse([c - big * 0.025, c - big * 0.24, c + big * 0.025, c + big * 0.26], fill=body)
    for side in (-1, 1):
        draw.line([c, c - big * 0.22, c + side * big * 0.12, c - big * 0.4], fill=body, width=max(big // 80, 1))
    scale = rng.uniform(0.7, 1.0)
    wings = wings.resize((int(big * scale),) * 2, Image.Resampling.BICUBIC)
    wings = wings.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BICUBIC, expand=False)
    offset = ((big - wings.width) // 2 + int(rng.integers(-big // 20, big // 20 + 1)),) * 2
    canvas.alpha_composite(wings, offset)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=big / 256))
    return canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def synthetic_butterflies_folder(n: int = 1000, size: int = 64, seed: int = 0, night: bool = False) -> Path:
    """Write ``n`` synthetic butterflies (night butterflies if ``night``) as PNGs into a cached folder (once).

    The folder is written under a temporary name and renamed when complete, so an interrupted run never
    leaves a half-filled folder behind.
    """
    family = "night-butterflies" if night else "synthetic-butterflies"
    folder = data_dir() / f"{family}-v2-n{n}-s{size}-seed{seed}"
    if folder.is_dir():
        return folder
    with atomic_folder(folder) as tmp:
        for i in range(n):
            synthetic_butterfly(i, size, seed, night).save(tmp / f"butterfly_{i:05d}.png")
    return folder


def load_image_folder(folder: str | Path, skip_bad: bool = False):
    """A local folder of images as a ``datasets.Dataset`` with an ``image`` column, checked file by file."""
    import datasets

    files = check_image_folder(folder, skip_bad=skip_bad)
    # The files are local: datasets' "Downloading data" and "Generating train split" bars would only say it
    # copied them into its cache, so they are hidden for this call (and restored after).
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset("imagefolder", data_files={"train": [str(p) for p in files]}, split="train")
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def load_butterflies(
    data_dir: str | Path | None = None, n_synthetic: int = 1000, skip_bad: bool = False, offline: bool | None = None
) -> Source:
    """Butterflies with an ``image`` column: a local folder if given, else the Hub, else synthetic offline."""
    if data_dir is not None:
        dataset = load_image_folder(data_dir, skip_bad=skip_bad)
        return Source(dataset, f"local image folder {data_dir} ({len(dataset)} images)")
    if offline is None:
        offline = use_offline_data()

    def drawn() -> Source:
        folder = synthetic_butterflies_folder(n_synthetic)
        dataset = load_image_folder(folder)
        return Source(
            dataset, f"offline stand-in: {len(dataset)} synthetic butterflies drawn by the course (cached in {folder})"
        )

    def hub() -> Source:
        from datasets import load_dataset

        dataset = load_dataset(BUTTERFLIES_REPO, split="train")
        return Source(dataset, f"Hub dataset {BUTTERFLIES_REPO} ({len(dataset)} images)")

    if not offline:
        try:
            return from_hub(BUTTERFLIES_REPO, hub, drawn)  # a deleted dataset: one line, then the drawings
        except (OSError, ConnectionError) as err:
            warnings.warn(f"loading {BUTTERFLIES_REPO} failed ({err}); using synthetic butterflies.", stacklevel=2)
    return drawn()


def butterfly_transform(image_size: int = 32, flip: bool = True) -> transforms.Compose:
    """Chapter 3's preprocessing: resize, random flip, to tensor, normalise to [-1, 1]."""
    steps = [transforms.Resize((image_size, image_size))]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
    return transforms.Compose(steps)


def with_preprocessing(dataset, image_size: int = 32, flip: bool = True):
    """Attach chapter 3's preprocessing lazily (``set_transform``): items become ``{"images": tensor}``."""
    preprocess = butterfly_transform(image_size, flip)

    def transform(batch: dict) -> dict:
        return {"images": [preprocess(to_rgb(image)) for image in batch["image"]]}

    dataset.set_transform(transform)
    return dataset


def first_images(dataset: Dataset, n: int) -> torch.Tensor:
    """Stack the first ``n`` image tensors of a dataset (items may be tuples or dicts with ``images``)."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    images = [unpack(item)[0] for item in items]
    return torch.stack(images)


# ---- Training batches on the device (chapter 3's fast path, chapter 5's script) -----------------------------


def decode_images(images: Iterable, size: int) -> torch.Tensor:
    """Decode, convert to RGB and resize PIL images once, into one (N, 3, size, size) uint8 tensor.

    The same pixels chapter 3's ``Resize`` + ``ToTensor`` give, computed once instead of every epoch.
    """
    from torchvision.transforms import functional as TF

    from .imagefolder import to_rgb

    return torch.stack([TF.pil_to_tensor(TF.resize(to_rgb(im), [size, size])) for im in images])


class DeviceBatches:
    """Shuffled training batches drawn from a uint8 image tensor kept on the device; flips done on the device.

    Iterating gives float batches in [-1, 1] (channels_last), one epoch per iteration, with no host work
    beyond launching kernels: the fast path's replacement for ``DataLoader`` + ``set_transform``.
    With ``rank`` and ``world`` (several processes), every process draws the same shuffled order and takes
    its own share of the batches, the same number each so that no process waits for a missing step.
    With ``labels`` (one per image) or ``noise`` (each image's own noise: reflow's pairs), each batch is a dict
    with ``"images"`` and those (read one with ``unpack``).
    """

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device | str, flip: bool = True,
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1,
                 labels: torch.Tensor | None = None, noise: torch.Tensor | None = None):
        self.images = images.to(device)
        self.paired = {name: v.to(device) for name, v in (("labels", labels), ("noise", noise)) if v is not None}
        self.batch_size, self.flip, self.shuffle, self.rank, self.world = batch_size, flip, shuffle, rank, world
        self.seed = seed
        self.order_generator = torch.Generator(self.images.device).manual_seed(seed)  # same in every process
        self.flip_generator = torch.Generator(self.images.device).manual_seed(seed + 1 + rank)

    def __len__(self) -> int:
        batches = -(-len(self.images) // self.batch_size)
        return batches if self.world == 1 else batches // self.world

    def set_epoch(self, epoch: int) -> None:
        """Fix the shuffled order of ``epoch`` (so a resumed run sees the order it would have seen)."""
        self.order_generator.manual_seed(self.seed + epoch)

    def __iter__(self):
        n = len(self.images)
        order = (torch.randperm(n, device=self.images.device, generator=self.order_generator) if self.shuffle
                 else torch.arange(n, device=self.images.device))
        chunks = order.split(self.batch_size)[self.rank::self.world][: len(self)]
        for idx in chunks:
            x = self.images[idx].float().div_(127.5).sub_(1)
            if self.flip:
                mask = torch.rand(len(x), 1, 1, 1, device=x.device, generator=self.flip_generator) < 0.5
                x = torch.where(mask, x.flip(-1), x)
            x = x.contiguous(memory_format=torch.channels_last)
            yield {"images": x, **{name: v[idx] for name, v in self.paired.items()}} if self.paired else x


def unpack(batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """A batch's images, labels and paired noise (None where it has none). A batch is a tensor of images, an
    ``(images, labels)`` pair (a ``TensorDataset``'s), or a dict with ``"images"`` and optionally ``"labels"`` and
    ``"noise"`` (``with_preprocessing``'s datasets, ``DeviceBatches``, the training script's)."""
    if isinstance(batch, dict):
        images, labels = batch["images"], batch.get("labels")
        labels = torch.as_tensor(labels, device=images.device) if labels is not None else None
        return images, labels, batch.get("noise")
    if isinstance(batch, list | tuple):
        return batch[0], (batch[1] if len(batch) > 1 else None), None
    return batch, None, None

