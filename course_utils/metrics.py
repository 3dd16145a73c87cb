"""The course's offline quality measure for generated digits (no Inception weights needed).

A small CNN is trained on real digits. Generated samples are then scored three ways:

- ``confident``: the share of samples the classifier gives one class with probability >= 0.9;
- ``classes``: how many of the 10 digit classes appear among those confident samples;
- ``frechet``: the Frechet distance between the classifier's penultimate features of the samples and of
  held-out real digits (like FID, in a feature space that fits 28x28 digits). Lower is better.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .data import digits_28


class DigitClassifier(nn.Module):
    """Two conv blocks and a 32-wide feature layer: small enough to train in seconds on a CPU."""

    def __init__(self, feature_dim: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, 10)

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
        """Score images in [0, 1] of shape (N, 1, 28, 28): confident share, classes covered, Frechet distance."""
        if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"score takes (N, 1, 28, 28) images in [0, 1], got shape {tuple(images.shape)}")
        if len(images) < 2:
            raise ValueError("score needs at least 2 images to estimate a feature covariance")
        self.model.eval()
        x = images.detach().float().cpu().clamp(0, 1)
        probs = F.softmax(self.model(x), dim=1)
        confident = probs.max(1).values >= threshold
        classes = probs.argmax(1)[confident].unique().numel()
        feats = self.model.features(x).numpy().astype(np.float64)
        return {
            "confident": float(confident.float().mean()),
            "classes": int(classes),
            "frechet": frechet_distance(feats, self.reference_features),
        }


def train_digit_scorer(
    train: Dataset | None = None, reference: Dataset | None = None, epochs: int = 12, seed: int = 0
) -> DigitScorer:
    """Train the classifier on ``train`` (default: the offline digits' train split) and keep ``reference``
    features (default: the held-out test split). Deterministic for a seed; about 10 s on 2 CPU cores."""
    train = train if train is not None else digits_28("train")
    reference = reference if reference is not None else digits_28("test")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=generator)
    for _ in tqdm(range(epochs), desc="training the digit classifier", leave=False):
        for x, y in loader:
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()  # small shifts: robust features
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    xs, ys = next(iter(DataLoader(reference, batch_size=len(reference))))
    with torch.no_grad():
        accuracy = float((model(xs).argmax(1) == ys).float().mean())
        feats = model.features(xs).numpy().astype(np.float64)
    return DigitScorer(model, feats, accuracy)
