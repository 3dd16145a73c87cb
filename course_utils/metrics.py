"""The course's offline quality measures for generated digits and butterflies (no Inception weights needed).

A small CNN is trained on real digits and on an 11th class, "not a digit" (noise of several kinds, blobs,
scribbles, flat images, digits drowned in noise: ``not_digits``), so that noise is not read as a digit.
Generated samples are then scored three ways:

- ``confident``: the share of samples the classifier gives one digit with probability >= 0.9;
- ``classes``: how many of the 10 digit classes appear among those confident samples;
- ``frechet``: the Frechet distance between the classifier's penultimate features of the samples and of
  held-out real digits (like FID, in a feature space that fits 28x28 digits). Lower is better.

Butterflies get the same treatment: a small CNN learns to read the wing and background colour of the course's
drawn butterflies, and ``ButterflyScorer`` reports ``confident``, ``wing_colours`` (distinct colours among the
confident samples) and ``frechet``, and reads the wing colour of each sample (to check a prompt was followed).
It is taught an even wing-colour guess on images with no butterfly (``noise_and_blobs``), so noise, blobs and
flat colours are not read confidently.

Sound (chapter 10) likewise: a small CNN reads the root, mode and timbre of the course's synthesised arpeggios
from their mel spectrogram images; ``SoundScorer`` reports ``confident``, ``frechet`` in its feature space, the
modes it reads, and (``tonal``) the share of clips in which ``librosa.pyin`` hears a pitch. It too is taught an even
guess on every head for images with nothing to read.

Trained readers are cached (``_cached``) by ``READER_VERSION``, their settings and the torch version.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from .data import BACKGROUNDS, WING_COLOURS, butterfly_attributes, data_dir, digits_28, synthetic_butterfly
from .files import atomic_file


def conv_body(in_channels: int, widths: Sequence[int], size: int, feature_dim: int) -> nn.Sequential:
    """Conv 3x3 + ReLU + 2x2 max-pool per width, then a ReLU feature layer: the metrics' small feature extractors."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        in_channels, size = width, size // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_channels * size * size, feature_dim), nn.ReLU())


# The cache of trained readers (``_cached``) is keyed by these versions, the reader's settings and the torch
# version. Bump a reader's version whenever its architecture, its training or the data it learns from change.
READER_VERSION = {"digits": 3, "butterflies": 3, "sound": 3}

NOT_A_DIGIT = 10  # the digit classifier's 11th class


class DigitClassifier(nn.Module):
    """Two conv blocks and a 32-wide feature layer: small enough to train in seconds on a CPU. Its 11 logits are
    the digits 0-9 and ``NOT_A_DIGIT``."""

    def __init__(self, feature_dim: int = 32):
        super().__init__()
        self.body = conv_body(1, (16, 32), 28, feature_dim)
        self.head = nn.Linear(feature_dim, 11)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [0, 1], shape (B, 1, 28, 28) -> (B, feature_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.body(x))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows are samples)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eps = np.eye(len(cov_a)) * 1e-6  # keeps the square root defined when a covariance is near-singular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean.real))


def pixel_frechet(a: torch.Tensor, b: torch.Tensor, size: int = 4) -> float:
    """A coarse distance for any images (N, C, H, W): Frechet distance of their ``size``x``size`` average-pooled pixels.

    No trained network: it compares colour and layout at low resolution, enough to tell samples that learned
    the data from noise (lower is better; use at least a few dozen images per side).
    """
    if a.ndim != 4 or b.ndim != 4 or a.shape[1] != b.shape[1]:
        shapes = f"{tuple(a.shape)} and {tuple(b.shape)}"
        raise ValueError(f"pixel_frechet takes two (N, C, H, W) batches with equal C, got {shapes}")
    pooled = [F.adaptive_avg_pool2d(x.float(), size).flatten(1).cpu().numpy().astype(np.float64) for x in (a, b)]
    return frechet_distance(*pooled)


@dataclass
class DigitScorer:
    """A trained digit classifier plus the features of held-out real digits, ready to score samples."""

    model: DigitClassifier
    reference_features: np.ndarray
    test_accuracy: float

    @torch.no_grad()
    def score(self, images: torch.Tensor, threshold: float = 0.9) -> dict[str, float]:
        """Score images in [0, 1] of shape (N, 1, 28, 28): confident share (one digit read with probability >=
        ``threshold``; "not a digit" never counts), digit classes covered, Frechet distance."""
        if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"score takes (N, 1, 28, 28) images in [0, 1], got shape {tuple(images.shape)}")
        if len(images) < 2:
            raise ValueError("score needs at least 2 images to estimate a feature covariance")
        self.model.eval()
        x = images.detach().float().cpu().clamp(0, 1)
        digit_probs = F.softmax(self.model(x), dim=1)[:, :NOT_A_DIGIT]
        confident = digit_probs.max(1).values >= threshold
        classes = digit_probs.argmax(1)[confident].unique().numel()
        feats = self.model.features(x).numpy().astype(np.float64)
        return {
            "confident": float(confident.float().mean()),
            "classes": int(classes),
            "frechet": frechet_distance(feats, self.reference_features),
        }


    @torch.no_grad()
    def frechet_spread(self, images: torch.Tensor, rounds: int = 50, seed: int = 0) -> float:
        """The uncertainty of ``score``'s Frechet distance: its standard deviation over ``rounds`` bootstrap
        resamples (with replacement) of the images, the reference features held fixed."""
        self.model.eval()
        feats = self.model.features(images.detach().float().cpu().clamp(0, 1)).numpy().astype(np.float64)
        return float(np.std(bootstrap(lambda i: frechet_distance(feats[i], self.reference_features), len(feats),
                                      rounds, seed)))


def score_spread(scorer, images: torch.Tensor, rounds: int = 30, seed: int = 0, **options) -> dict[str, float]:
    """The uncertainty of ``scorer.score(images, **options)``: each number's standard deviation over ``rounds``
    bootstrap resamples (with replacement) of the images — print it beside the score (``0.62 ± 0.05``)."""
    draws = bootstrap(lambda i: scorer.score(images[torch.from_numpy(i)], **options), len(images), rounds, seed)
    return {key: float(np.std([d[key] for d in draws])) for key in draws[0]}


def bootstrap(statistic: Callable[[np.ndarray], Any], n: int, rounds: int, seed: int = 0) -> list:
    """``statistic(index)`` on ``rounds`` bootstrap resamples of ``n`` items: each ``index`` draws ``n`` positions
    with replacement. The spread of what it returns is the statistic's uncertainty."""
    rng = np.random.default_rng(seed)
    return [statistic(rng.integers(0, n, n)) for _ in range(rounds)]


def _train_reader(make: Callable[[], nn.Module], train: Dataset, epochs: int, seed: int, lr: float, desc: str,
                  loss_of: Callable[[nn.Module, list, torch.Generator], torch.Tensor],
                  one_cycle: bool = True) -> nn.Module:
    """The readers' one training loop: ``make()`` seeded by ``seed``, Adam at ``lr`` (on a one-cycle schedule
    with ``one_cycle``), shuffled batches of 64; ``loss_of(model, batch, generator)`` is each batch's loss (its
    augmentations draw from ``generator``, so a seed gives the same reader every time). Returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=generator)
    schedule = (torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * len(loader))
                if one_cycle else None)
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        for batch in loader:
            loss = loss_of(model, batch, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    return model.eval()


def _cache_file(kind: str, key: dict) -> Path:
    """Where ``_cached`` keeps the ``kind`` reader trained with settings ``key``: a file in ``data_dir()/scorers``
    named by a hash of ``READER_VERSION[kind]``, the settings and the torch version (not of the source, so an
    edited comment retrains nothing)."""
    text = f"{kind} v{READER_VERSION[kind]} torch {torch.__version__} {sorted(key.items())}"
    return data_dir() / "scorers" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def _cached(kind: str, key: dict, cls: type, train: Callable[[], Any]) -> Any:
    """A scorer trained before with the same version and settings (loaded in a blink), or a new one.

    The file (``_cache_file``) holds tensors only (no pickled code) and is written whole or not at all
    (``files.atomic_file``). A damaged file is retrained over, with a warning.
    """
    file = _cache_file(kind, key)
    if file.is_file():
        try:
            saved = torch.load(file, weights_only=True)
            model = {"digits": DigitClassifier, "butterflies": ButterflyReader, "sound": SoundReader}[kind]()
            model.load_state_dict(saved.pop("model"))
            return cls(model.eval(), saved.pop("reference_features").numpy(), **saved)
        except Exception as err:  # noqa: BLE001 -- any damage means: train again
            warnings.warn(f"could not read the cached scorer {file} ({err}); training it again", stacklevel=3)
    scorer = train()
    numbers = {k: v for k, v in vars(scorer).items() if k not in ("model", "reference_features")}
    with atomic_file(file) as tmp:
        torch.save({"model": scorer.model.state_dict(),
                    "reference_features": torch.from_numpy(scorer.reference_features), **numbers}, tmp)
    return scorer


def blobs(n: int, generator: torch.Generator, channels: int = 1, size: int = 28) -> torch.Tensor:
    """``n`` images (n, channels, size, size) in [0, 1] of 1 to 3 soft elliptic blobs: grey on black for one
    channel, of random colours on a flat background of another random colour for three."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    images = torch.rand(n, channels, 1, 1, generator=generator) * (channels > 1)
    images = images.expand(n, channels, size, size)
    for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
        centre = (0.15 + 0.7 * torch.rand(n, 2, 1, 1, generator=generator)) * size
        width = (0.04 + 0.14 * torch.rand(n, 2, 1, 1, generator=generator)) * size
        blob = torch.exp(-(((xx - centre[:, :1]) / width[:, :1]) ** 2 + ((yy - centre[:, 1:]) / width[:, 1:]) ** 2) / 2)
        colour = (0.4 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator) if channels == 1
                  else torch.rand(n, channels, 1, 1, generator=generator))
        images = images * (1 - blob) + colour * blob
    return images


def scribbles(n: int, generator: torch.Generator, size: int = 28) -> torch.Tensor:
    """``n`` images (n, 1, size, size) of a random scribble: 4 to 9 connected straight strokes between random
    points, 1 to 3 pixels wide, white on black."""
    segments = int(torch.randint(4, 10, (1,), generator=generator))
    points = 2 + (size - 4) * torch.rand(n, segments + 1, 1, 2, generator=generator)  # (n, segments + 1, 1, xy)
    start, along = points[:, :-1], points[:, 1:] - points[:, :-1]
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    pixels = torch.stack([xx, yy], -1).view(1, 1, -1, 2)
    t = (((pixels - start) * along).sum(-1) / along.pow(2).sum(-1).clamp(min=1e-6)).clamp(0, 1)  # closest point
    distance = (pixels - start - t.unsqueeze(-1) * along).norm(dim=-1).amin(1)  # to the nearest stroke
    half_width = 0.5 + torch.rand(n, 1, generator=generator)
    return (half_width + 0.5 - distance).clamp(0, 1).view(n, 1, size, size)


def not_digits(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``n`` images (n, 1, 28, 28) in [0, 1] that are not digits, for the classifier's ``NOT_A_DIGIT`` class: an
    even mix of uniform noise and clipped Gaussian noise (each of a random range), blurred noise, ``blobs``, blobs
    of noise, ``scribbles``, flat images, ``digits`` (real ones, (N, 1, 28, 28)) drowned in noise, and digits cut
    in half (along a random line) under noise."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    def some_digits(k: int) -> torch.Tensor:
        return digits[torch.randint(0, len(digits), (k,), generator=generator)]

    k = -(-n // 9)  # images of each kind
    low = 0.5 * rand(k, 1, 1, 1)
    uniform = low + (1 - low) * (0.3 + 0.7 * rand(k, 1, 1, 1)) * rand(k, 1, 28, 28)
    gaussian = (0.2 + 0.6 * rand(k, 1, 1, 1) + (0.1 + 0.9 * rand(k, 1, 1, 1)) * torch.randn(k, 1, 28, 28,
                                                                                             generator=generator))
    blurred = gaussian_blur(torch.randn(k, 1, 28, 28, generator=generator), 7, 0.6 + 1.4 * float(rand(1)))
    blurred = blurred - blurred.amin((2, 3), keepdim=True)
    blurred = blurred / blurred.amax((2, 3), keepdim=True)
    flat = rand(k, 1, 1, 1) + 0.02 * torch.randn(k, 1, 28, 28, generator=generator)
    share = 0.5 + 0.4 * rand(k, 1, 1, 1)
    drowned = (1 - share) * some_digits(k) + share * rand(k, 1, 28, 28)
    angle = 2 * math.pi * rand(k, 1, 1, 1)
    yy, xx = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")
    kept = xx * angle.cos() + yy * angle.sin() > 8 * (rand(k, 1, 1, 1) - 0.5)  # one side of a random line
    share = 0.2 + 0.5 * rand(k, 1, 1, 1)
    halves = (1 - share) * some_digits(k) * kept + share * rand(k, 1, 28, 28)
    images = torch.cat([uniform, gaussian, blurred, blobs(k, generator), scribbles(k, generator), flat, drowned,
                        halves, blobs(k, generator) * rand(k, 1, 28, 28)]).clamp(0, 1)
    return images[torch.randperm(len(images), generator=generator)[:n]]


def train_digit_scorer(
    train: Dataset | None = None, reference: Dataset | None = None, epochs: int = 30, seed: int = 0
) -> DigitScorer:
    """Train the classifier on ``train`` (default: the offline digits' train split) plus ``not_digits`` and keep
    ``reference`` features (default: the held-out test split). Deterministic for a seed; trained the first time
    (seconds on a CPU), then loaded from the course's cache when the default data is used."""
    if train is None and reference is None:
        return _cached("digits", dict(epochs=epochs, seed=seed), DigitScorer,
                       lambda: _train_digit_scorer(digits_28("train"), digits_28("test"), epochs, seed))
    return _train_digit_scorer(train, reference, epochs, seed)


def _train_digit_scorer(train: Dataset | None, reference: Dataset | None, epochs: int, seed: int) -> DigitScorer:
    """``train_digit_scorer`` without the cache."""
    train = train if train is not None else digits_28("train")
    reference = reference if reference is not None else digits_28("test")

    def loss_of(model: nn.Module, batch: list, generator: torch.Generator) -> torch.Tensor:
        x, y = batch
        shift = torch.randint(-2, 3, (2,), generator=generator).tolist()  # small shifts: robust features
        grain = 0.05 * torch.rand(len(x), 1, 1, 1, generator=generator)  # a little noise is still a digit
        x = (torch.roll(x, shifts=shift, dims=(2, 3)) + grain * torch.randn(x.shape, generator=generator)).clamp(0, 1)
        rejects = not_digits(len(x) // 3, x, generator)
        labels = torch.cat([y, torch.full((len(rejects),), NOT_A_DIGIT)])
        return F.cross_entropy(model(torch.cat([x, rejects])), labels)

    model = _train_reader(DigitClassifier, train, epochs, seed, 5e-3, "training the digit classifier", loss_of)
    xs, ys = next(iter(DataLoader(reference, batch_size=len(reference))))
    with torch.no_grad():
        accuracy = float((model(xs).argmax(1) == ys).float().mean())  # "not a digit" counts as a mistake
        feats = model.features(xs).numpy().astype(np.float64)
    return DigitScorer(model, feats, accuracy)


# --- Butterflies: read the wing and background colour of 32x32 drawings -------------------------------


def drawn_butterflies(indices: Sequence[int], size: int = 32, seed: int = 0, night: bool = False) -> torch.Tensor:
    """Drawn butterflies number ``indices`` (night butterflies if ``night``) as (N, 3, size, size) in [0, 1]."""
    pixels = np.stack([np.asarray(synthetic_butterfly(i, size, seed, night)) for i in indices])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255


class ButterflyReader(nn.Module):
    """Three conv blocks, a 64-wide feature layer and two heads: wing colour and background colour."""

    def __init__(self, feature_dim: int = 64):
        super().__init__()
        self.body = conv_body(3, (16, 32, 32), 32, feature_dim)
        self.wing = nn.Linear(feature_dim, len(WING_COLOURS))
        self.background = nn.Linear(feature_dim, len(BACKGROUNDS))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [0, 1], shape (B, 3, 32, 32) -> (B, feature_dim)."""
        return self.body(x * 4 - 2)  # centred inputs: the colours are learned in a few epochs, not dozens

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wing colour logits (order of ``WING_COLOURS``) and background logits (order of ``BACKGROUNDS``)."""
        h = self.features(x)
        return self.wing(h), self.background(h)


@dataclass
class ButterflyScorer:
    """A trained butterfly reader plus the features of held-out drawn butterflies, ready to score samples."""

    model: ButterflyReader
    reference_features: np.ndarray
    wing_accuracy: float
    background_accuracy: float

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check the shape, resize to 32x32 and put the reader on the images' device."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"takes (N, 3, H, W) images in [0, 1], got shape {tuple(images.shape)}")
        self.model.to(images.device).eval()
        if images.shape[-2:] != (32, 32):
            images = F.interpolate(images.float(), size=(32, 32), mode="bilinear", antialias=True)
        return images.float()

    def wing_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Wing colour probabilities (N, 8), columns in ``WING_COLOURS`` order; differentiable (for guidance)."""
        return F.softmax(self.model(self._prepare(images))[0], dim=1)

    @torch.no_grad()
    def wing_colours(self, images: torch.Tensor) -> list[str]:
        """The wing colour name read in each image."""
        names = list(WING_COLOURS)
        return [names[i] for i in self.wing_probabilities(images).argmax(1).tolist()]

    @torch.no_grad()
    def background_colours(self, images: torch.Tensor) -> list[str]:
        """The background colour name read in each image."""
        names = list(BACKGROUNDS)
        return [names[i] for i in self.model(self._prepare(images))[1].argmax(1).tolist()]

    @torch.no_grad()
    def score(self, images: torch.Tensor, threshold: float = 0.9) -> dict[str, float]:
        """Score images (N, 3, H, W) in [0, 1]: confident share, wing colours covered, Frechet distance."""
        x = self._prepare(images.detach()).clamp(0, 1)
        if len(x) < 2:
            raise ValueError("score needs at least 2 images to estimate a feature covariance")
        feats = self.model.features(x)
        probs = F.softmax(self.model.wing(feats), dim=1)
        confident = probs.max(1).values >= threshold
        colours = probs.argmax(1)[confident].unique().numel()
        return {
            "confident": float(confident.float().mean()),
            "wing_colours": int(colours),
            "frechet": frechet_distance(feats.cpu().numpy().astype(np.float64), self.reference_features),
        }


def border_brightness(images: torch.Tensor, width: int = 3) -> torch.Tensor:
    """Mean brightness (0-1) of each image's outer frame of ``width`` pixels: the background, away from the wings.

    Day backgrounds read 0.7-0.95, the night sky about 0.1 (chapter 6 counts samples below 0.35 as night).
    """
    frame = _frame(images.shape[-2:], width)
    return images[..., frame].mean(dim=(1, 2)) if images.ndim == 4 else images[..., frame].mean()


def _frame(size: Sequence[int], width: int) -> torch.Tensor:
    """A (H, W) boolean mask of an image's outer frame, ``width`` pixels wide."""
    frame = torch.ones(tuple(size), dtype=torch.bool)
    frame[width:-width, width:-width] = False
    return frame


def butterfly_mask(images: torch.Tensor, tolerance: float = 0.15, width: int = 2) -> torch.Tensor:
    """Where the butterfly is: (N, H, W) booleans, True where a pixel's colour is more than ``tolerance`` (in
    [0, 1], on any channel) away from the median colour of the image's outer frame (the background).

    Chapter 9 compares these silhouettes (their intersection over union) to say whether an edit kept the layout.
    """
    background = images[..., _frame(images.shape[-2:], width)].median(dim=-1).values  # (N, 3)
    return ((images - background[..., None, None]).abs().amax(dim=1)) > tolerance


def _butterfly_labels(indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Wing and background class numbers of the drawn butterflies ``indices``."""
    attrs = [butterfly_attributes(i) for i in indices]
    wings = torch.tensor([list(WING_COLOURS).index(a.wing) for a in attrs])
    return wings, torch.tensor([list(BACKGROUNDS).index(a.background) for a in attrs])


def train_butterfly_scorer(
    n_train: int = 3000, n_reference: int = 500, epochs: int = 8, seed: int = 0
) -> ButterflyScorer:
    """Train the reader on drawn butterflies 0..n_train-1 and keep the features and accuracies of a disjoint
    held-out set (from index 100,000). Deterministic for a seed; trained the first time (drawing the
    butterflies is half of it), then loaded from the course's cache."""
    key = dict(n_train=n_train, n_reference=n_reference, epochs=epochs, seed=seed)
    return _cached("butterflies", key, ButterflyScorer, lambda: _train_butterfly_scorer(**key))


def _train_butterfly_scorer(n_train: int, n_reference: int, epochs: int, seed: int) -> ButterflyScorer:
    """``train_butterfly_scorer`` without the cache."""
    train = TensorDataset(drawn_butterflies(range(n_train)), *_butterfly_labels(range(n_train)))
    held_out = range(100_000, 100_000 + n_reference)

    def loss_of(model: nn.Module, batch: list, generator: torch.Generator) -> torch.Tensor:
        x, wing, background = batch
        flip = torch.rand(len(x), 1, 1, 1, generator=generator) < 0.5  # mirrored and shifted: robust features
        shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
        x = torch.roll(torch.where(flip, x.flip(3), x), shifts=shift, dims=(2, 3))
        wing_logits, background_logits = model(x)
        loss = F.cross_entropy(wing_logits, wing) + F.cross_entropy(background_logits, background)
        # no butterfly, no colour: noise, blotches, blobs and flat colours are taught an even wing-colour guess
        return loss - F.log_softmax(model(noise_and_blobs(20, 3, generator))[0], dim=1).mean()

    model = _train_reader(ButterflyReader, train, epochs, seed, 3e-3, "training the butterfly reader", loss_of)
    xs, (wings, backgrounds) = drawn_butterflies(held_out), _butterfly_labels(held_out)
    with torch.no_grad():
        wing_logits, background_logits = model(xs)
        feats = model.features(xs).numpy().astype(np.float64)
    wing_accuracy = float((wing_logits.argmax(1) == wings).float().mean())
    background_accuracy = float((background_logits.argmax(1) == backgrounds).float().mean())
    return ButterflyScorer(model, feats, wing_accuracy, background_accuracy)


def noise_and_blobs(n: int, channels: int, generator: torch.Generator, size: int = 32) -> torch.Tensor:
    """``n`` images (n, channels, size, size) in [0, 1] with nothing to read, an even mix of five kinds: uniform
    noise, clipped Gaussian noise, blotches (4x4 noise, upsampled), ``blobs`` and flat colours (or greys)."""
    k = -(-n // 5)
    gaussian = 0.5 + (0.2 + 0.6 * torch.rand(k, 1, 1, 1, generator=generator)) * torch.randn(k, channels, size, size,
                                                                                           generator=generator)
    blotches = F.interpolate(torch.rand(k, channels, 4, 4, generator=generator), size=size, mode="bilinear")
    flat = torch.rand(k, channels, 1, 1, generator=generator).expand(k, channels, size, size)
    images = torch.cat([torch.rand(k, channels, size, size, generator=generator), gaussian, blotches,
                        blobs(k, generator, channels, size), flat]).clamp(0, 1)
    return images[torch.randperm(len(images), generator=generator)[:n]]


def quality_by_steps(scorer: DigitScorer, unet, scheduler, steps: Sequence[int], n: int = 200, seed: int = 0,
                     device: torch.device | str = "cpu") -> dict[int, dict]:
    """Sample ``n`` digits with ``scheduler`` at each number of ``steps`` (same starting noise) and score them:
    ``score``'s numbers plus the Frechet distance's bootstrap spread (``frechet_spread``) and the seconds taken."""
    import time

    from .sampling import sample_ddpm

    rows = {}
    for k in tqdm(steps, desc="steps", leave=False):
        start = time.perf_counter()
        x = (sample_ddpm(unet, scheduler, n, k, device=device, seed=seed) + 1) / 2
        seconds = time.perf_counter() - start
        rows[k] = {**scorer.score(x), "frechet_spread": scorer.frechet_spread(x), "seconds": round(seconds, 2)}
    return rows


# --- Sound: read the root, mode and timbre of the course's synthesised arpeggios (chapter 10) ----------------


class SoundReader(nn.Module):
    """Three conv blocks on a mel spectrogram image, a 64-wide feature layer and three heads: root, mode, timbre."""

    def __init__(self, feature_dim: int = 64):
        from .audio import MODES, SPECTROGRAM, TIMBRES

        super().__init__()
        self.body = conv_body(1, (16, 32, 32), SPECTROGRAM.y_res, feature_dim)
        self.root, self.mode, self.timbre = (nn.Linear(feature_dim, n) for n in (12, len(MODES), len(TIMBRES)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of spectrogram images in [0, 1], (B, 1, 32, 32) -> (B, feature_dim)."""
        return self.body(x * 4 - 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Root logits (C to B), mode logits (order of ``audio.MODES``), timbre logits (``audio.TIMBRES``)."""
        h = self.features(x)
        return self.root(h), self.mode(h), self.timbre(h)


@dataclass
class SoundScorer:
    """A trained sound reader plus the features of held-out synthesised clips, ready to score spectrograms."""

    model: SoundReader
    reference_features: np.ndarray
    root_accuracy: float
    mode_accuracy: float
    timbre_accuracy: float

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check the shape (N, 1, 32, 32) and put the reader on the images' device."""
        from .audio import SPECTROGRAM

        if images.ndim != 4 or images.shape[1:] != (1, SPECTROGRAM.y_res, SPECTROGRAM.x_res):
            raise ValueError(f"takes spectrogram images (N, 1, {SPECTROGRAM.y_res}, {SPECTROGRAM.x_res}) in [0, 1] "
                             f"(course_utils.audio.images_to_tensor makes them), got shape {tuple(images.shape)}")
        self.model.to(images.device).eval()
        return images.detach().float().clamp(0, 1)

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> list[tuple[str, str, str]]:
        """(root, mode, timbre) names read in each spectrogram image, e.g. ("A", "minor", "pluck")."""
        from .audio import MODES, NOTE_NAMES, TIMBRES

        root, mode, timbre = (logits.argmax(1).tolist() for logits in self.model(self._prepare(images)))
        return [(NOTE_NAMES[r], MODES[m], TIMBRES[t]) for r, m, t in zip(root, mode, timbre, strict=True)]

    @torch.no_grad()
    def score(self, images: torch.Tensor, threshold: float = 0.9, tonal: bool = True) -> dict[str, float]:
        """Score spectrogram images (N, 1, 32, 32) in [0, 1]: ``confident`` (root and timbre both read with
        probability >= ``threshold``), ``frechet``, the share read as ``minor``, and with ``tonal`` the share
        of clips ``librosa.pyin`` hears a pitch in (after Griffin-Lim, clip by clip: the slow part)."""
        x = self._prepare(images)
        if len(x) < 2:
            raise ValueError("score needs at least 2 images to estimate a feature covariance")
        feats = self.model.features(x)
        root, mode, timbre = (F.softmax(head(feats), dim=1) for head in (self.model.root, self.model.mode,
                                                                        self.model.timbre))
        confident = (root.max(1).values >= threshold) & (timbre.max(1).values >= threshold)
        scores = {"confident": float(confident.float().mean()),
                  "frechet": frechet_distance(feats.cpu().numpy().astype(np.float64), self.reference_features),
                  "read as minor": float((mode.argmax(1) == 1).float().mean())}
        if tonal:
            scores["tonal"] = tonal_share(x)
        return scores


def tonal_share(images: torch.Tensor, voiced: float = 0.5) -> float:
    """The share of spectrogram images (N, 1, H, W) in [0, 1] whose sound (Griffin-Lim) ``librosa.pyin`` finds
    pitched in at least ``voiced`` of its frames: real arpeggios are, noise is not."""
    import librosa

    from .audio import SPECTROGRAM, tensor_to_images

    shares = []
    for image in tqdm(tensor_to_images(images), desc="pyin", leave=False):
        sound = SPECTROGRAM.to_audio(image)
        _, is_voiced, _ = librosa.pyin(sound, fmin=200, fmax=1100, sr=SPECTROGRAM.sample_rate,
                                       frame_length=SPECTROGRAM.n_fft)
        shares.append(float(np.mean(is_voiced)))
    return float(np.mean(np.array(shares) >= voiced))


def _clip_labels(clips: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Root, mode and timbre class numbers of synthesised clips."""
    from .audio import MODES, TIMBRES

    return (torch.tensor([c.root for c in clips]), torch.tensor([MODES.index(c.mode) for c in clips]),
            torch.tensor([TIMBRES.index(c.timbre) for c in clips]))


def train_sound_scorer(n_train: int = 3000, n_reference: int = 500, epochs: int = 8, seed: int = 0) -> SoundScorer:
    """Train the reader on synthesised clips 0..n_train-1 (both modes, every timbre; data seed 1000, so not the
    shipped pipeline's training clips) and keep the features and accuracies of a disjoint held-out set (from
    index 100,000). Deterministic for a seed; trained the first time, then cached."""
    key = dict(n_train=n_train, n_reference=n_reference, epochs=epochs, seed=seed)
    return _cached("sound", key, SoundScorer, lambda: _train_sound_scorer(**key))


def _train_sound_scorer(n_train: int, n_reference: int, epochs: int, seed: int) -> SoundScorer:
    """``train_sound_scorer`` without the cache."""
    from .audio import clip_images

    x, clips = clip_images(range(n_train), seed=1000)
    train = TensorDataset(x, *_clip_labels(clips))

    def loss_of(model: nn.Module, batch: list, generator: torch.Generator) -> torch.Tensor:
        x, *labels = batch  # root, mode, timbre
        shift = int(torch.randint(-2, 3, (1,), generator=generator))  # onsets a few frames early or late
        logits = model(torch.roll(x, shifts=shift, dims=3))
        loss = sum(F.cross_entropy(out, y) for out, y in zip(logits, labels, strict=True))
        # no clip, no answer: noise, blotches, blobs and flat images are taught an even guess on every head
        noise = noise_and_blobs(20, 1, generator, size=x.shape[-1])
        return loss - sum(F.log_softmax(out, dim=1).mean() for out in model(noise))

    model = _train_reader(SoundReader, train, epochs, seed, 3e-3, "training the sound reader", loss_of)
    held_x, held_clips = clip_images(range(100_000, 100_000 + n_reference), seed=1000)
    with torch.no_grad():
        logits = model(held_x)
        feats = model.features(held_x).numpy().astype(np.float64)
    root_acc, mode_acc, timbre_acc = (float((out.argmax(1) == y).float().mean())
                                      for out, y in zip(logits, _clip_labels(held_clips), strict=True))
    return SoundScorer(model, feats, root_acc, mode_acc, timbre_acc)
