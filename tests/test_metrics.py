"""course_utils.metrics: the digit classifier, the butterfly reader and the sound reader, their cache, the
Frechet distance and the spread of a score."""

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from course_utils import audio, metrics, tiny_sd
from course_utils.data import butterfly_attributes, digits_28
from course_utils.metrics import (
    drawn_butterflies,
    frechet_distance,
    train_butterfly_scorer,
    train_digit_scorer,
    train_sound_scorer,
)


@pytest.fixture(scope="module")
def scorer():
    return train_digit_scorer()


def nothing_to_read(n: int, channels: int, size: int, seed: int = 7) -> dict[str, torch.Tensor]:
    """Four sets of ``n`` images (n, channels, size, size) in [0, 1] with nothing to read: uniform noise, Gaussian
    noise N(0.5, 0.5^2) clipped (chapter 2's row), soft blobs and flat images, from a seed the readers never saw."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, channels, size, size)
    return {"uniform noise": torch.rand(shape, generator=g),
            "Gaussian noise": (0.5 + 0.5 * torch.randn(shape, generator=g)).clamp(0, 1),
            "blobs": metrics.blobs(n, g, channels, size),
            "flat": torch.rand(n, channels, 1, 1, generator=g).expand(shape).contiguous()}


def test_classifier_learns_the_digits(scorer):
    assert scorer.test_accuracy > 0.95


def test_held_out_digits_are_read_confidently_and_noise_is_not(scorer):
    real = digits_28("test").tensors[0]  # never trained on
    r = scorer.score(real)
    assert r["confident"] > 0.9 and r["classes"] == 10, r
    for name, x in nothing_to_read(300, 1, 28).items():
        n = scorer.score(x)
        assert n["confident"] <= 0.02, (name, n)
        assert r["frechet"] * 20 < n["frechet"], (name, n)


def test_noise_is_read_as_not_a_digit(scorer):
    x = torch.rand(100, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        read = scorer.model(x).argmax(1)
    assert (read == metrics.NOT_A_DIGIT).float().mean() >= 0.95


def test_a_blur_of_digits_scores_between_real_digits_and_noise(scorer):
    real = digits_28("test").tensors[0][:300]
    blurred = gaussian_blur(real, 5, 1.5)  # smeared strokes, like an undertrained model's samples
    noise = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    r, b, n = scorer.score(real), scorer.score(blurred), scorer.score(noise)
    assert r["confident"] > b["confident"] + 0.1 and b["confident"] > n["confident"] + 0.1, (r, b, n)
    assert r["frechet"] * 5 < b["frechet"] and b["frechet"] * 5 < n["frechet"], (r, b, n)


def test_not_digits_are_images_of_every_kind_asked_for():
    digits = digits_28("train").tensors[0][:64]
    x = metrics.not_digits(45, digits, torch.Generator().manual_seed(0))
    assert x.shape == (45, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    again = metrics.not_digits(45, digits, torch.Generator().manual_seed(0))
    assert torch.equal(x, again), "the same generator seed gives the same images"


def trained_twice(train, tmp_path, monkeypatch) -> list:
    """Two scorers from ``train()``, each trained from scratch: each call gets an empty cache of its own."""
    scorers = []
    for run in ("first", "second"):
        monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / run))
        scorers.append(train())
        assert len(list((tmp_path / run / "scorers").glob("*.pt"))) == 1, "trained here, not loaded from elsewhere"
    return scorers


def test_scorer_is_deterministic(tmp_path, monkeypatch):
    x = digits_28("test").tensors[0][:50]
    first, second = trained_twice(lambda: train_digit_scorer(epochs=2), tmp_path, monkeypatch)
    assert first.score(x) == second.score(x)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_shift():
    a = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)).double().numpy()
    assert abs(frechet_distance(a, a)) < 1e-3
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-3)  # squared mean shift, same covariance


def test_score_rejects_wrong_shapes(scorer):
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        scorer.score(torch.rand(4, 3, 32, 32))


@pytest.fixture(scope="module")
def butterfly_scorer():
    return train_butterfly_scorer()  # the chapters' reader (shared with them through the session cache)


def test_butterfly_reader_reads_the_wing_colour_of_fresh_drawings(butterfly_scorer):
    assert butterfly_scorer.wing_accuracy >= 0.95 and butterfly_scorer.background_accuracy >= 0.95
    indices = range(200_000, 200_100)
    read = butterfly_scorer.wing_colours(drawn_butterflies(indices, size=64))  # 64x64: resized to 32x32 first
    hits = [colour == butterfly_attributes(i).wing for colour, i in zip(read, indices, strict=True)]
    assert sum(hits) >= 95


def test_drawn_butterflies_score_better_than_blur_and_noise(butterfly_scorer):
    real = drawn_butterflies(range(200_000, 200_200))
    noise = torch.rand(200, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    r, b, n = (butterfly_scorer.score(x) for x in (real, gaussian_blur(real, 5, 1.5), noise))
    assert r["wing_colours"] == 8 and r["confident"] > 0.9 and n["confident"] <= 0.02
    assert r["frechet"] * 2 < b["frechet"] and b["frechet"] * 5 < n["frechet"]


def test_butterfly_reader_reads_no_colour_in_noise_blobs_or_flat_colours(butterfly_scorer):
    for name, x in nothing_to_read(300, 3, 32).items():
        assert butterfly_scorer.score(x)["confident"] <= 0.02, name


def test_wing_probabilities_are_differentiable(butterfly_scorer):
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    probs = butterfly_scorer.wing_probabilities(x)
    probs[:, 0].sum().backward()
    assert probs.shape == (2, 8) and x.grad.abs().sum() > 0


def test_butterfly_scorer_is_deterministic(tmp_path, monkeypatch):
    x = drawn_butterflies(range(200_000, 200_050))
    first, second = trained_twice(lambda: train_butterfly_scorer(n_train=200, n_reference=50, epochs=1), tmp_path,
                                  monkeypatch)
    assert first.score(x) == second.score(x)


def test_butterfly_score_rejects_wrong_shapes(butterfly_scorer):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        butterfly_scorer.score(torch.rand(4, 1, 28, 28))


def test_scorers_are_cached_by_settings_and_version_and_a_damaged_cache_is_retrained(monkeypatch):
    import time
    import warnings

    from course_utils.data import data_dir

    first = train_digit_scorer(epochs=1)
    files = list((data_dir() / "scorers").glob("digits-*.pt"))
    assert len(files) == 1 and not list((data_dir() / "scorers").glob(".*tmp"))
    start = time.perf_counter()
    again = train_digit_scorer(epochs=1)
    assert time.perf_counter() - start < 1.0, "the second call loads the cached scorer"
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert again.score(x) == first.score(x) and again.test_accuracy == first.test_accuracy
    train_digit_scorer(epochs=2)
    assert len(list((data_dir() / "scorers").glob("digits-*.pt"))) == 2, "other settings, another file"
    version = metrics.READER_VERSION["digits"]
    monkeypatch.setitem(metrics.READER_VERSION, "digits", version + 1)
    train_digit_scorer(epochs=1)
    assert len(list((data_dir() / "scorers").glob("digits-*.pt"))) == 3, "another reader version, another file"
    monkeypatch.setitem(metrics.READER_VERSION, "digits", version)
    files[0].write_bytes(b"not a checkpoint")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repaired = train_digit_scorer(epochs=1)
    assert any("training it again" in str(w.message) for w in caught)
    assert repaired.score(x) == first.score(x)


def test_score_spread_is_the_bootstrap_uncertainty_of_every_score(butterfly_scorer):
    from course_utils.metrics import score_spread

    drawn = drawn_butterflies(range(5000, 5064))
    spread = score_spread(butterfly_scorer, drawn, rounds=10)
    assert set(spread) == set(butterfly_scorer.score(drawn)), "one spread per number the score gives"
    assert spread["frechet"] > 0, "resampling 64 images moves the Frechet distance"
    half = torch.cat([drawn[:32], torch.rand(32, 3, 32, 32)])
    assert score_spread(butterfly_scorer, half, rounds=10)["confident"] > 0.02, "a half-right set has a spread"


def test_butterfly_mask_finds_the_butterfly_not_the_background():
    drawn, _ = tiny_sd.held_out_drawings(8)
    mask = metrics.butterfly_mask(drawn)
    assert mask.shape == (8, 32, 32)
    assert (mask[:, 12:20, 14:18].float().mean() > 0.8) and mask[:, 2:5, 2:5].float().mean() < 0.05
    plain = torch.ones(1, 3, 32, 32) * 0.5
    assert not metrics.butterfly_mask(plain).any()


@pytest.fixture(scope="module")
def reader():
    return train_sound_scorer()


def test_the_reader_reads_held_out_clips(reader):
    assert min(reader.root_accuracy, reader.mode_accuracy, reader.timbre_accuracy) >= 0.95
    x, clips = audio.clip_images(range(500_000, 500_064), seed=11)  # neither its training nor its reference clips
    read = reader.read(x)
    for i, what in enumerate(("root", "mode", "timbre")):
        truth = [(audio.NOTE_NAMES[c.root], c.mode, c.timbre)[i] for c in clips]
        right = np.mean([r[i] == t for r, t in zip(read, truth, strict=True)])
        assert right >= 0.9, (what, right)


def test_the_reader_tells_real_clips_from_noise(reader):
    real, _ = audio.clip_images(range(600_000, 600_024), seed=12)
    spec = audio.SPECTROGRAM
    noise = torch.rand(24, 1, spec.y_res, spec.x_res, generator=torch.Generator().manual_seed(0))
    r, n = reader.score(real), reader.score(noise)
    assert r["confident"] >= 0.9 and n["confident"] <= 0.02
    assert r["tonal"] >= 0.9 and n["tonal"] <= 0.1
    assert r["frechet"] * 5 < n["frechet"]
    with pytest.raises(ValueError, match="spectrogram images"):
        reader.score(torch.rand(4, 3, 32, 32))


def test_the_reader_reads_nothing_in_noise_blobs_or_flat_images(reader):
    for name, x in nothing_to_read(200, 1, audio.SPECTROGRAM.y_res).items():
        assert reader.score(x, tonal=False)["confident"] <= 0.02, name
