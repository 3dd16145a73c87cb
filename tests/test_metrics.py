import pytest
import torch
import torch.nn.functional as F

from course_utils.data import digits_28
from course_utils.metrics import frechet_distance, train_digit_scorer


@pytest.fixture(scope="module")
def scorer():
    return train_digit_scorer()


def test_classifier_learns_the_digits(scorer):
    assert scorer.test_accuracy > 0.9


def test_real_digits_score_far_better_than_noise_and_blur(scorer):
    real = digits_28("train").tensors[0][:200]
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    blurred = F.avg_pool2d(real, 5, stride=1, padding=2)
    r, n, b = scorer.score(real), scorer.score(noise), scorer.score(blurred)
    assert r["classes"] == 10 and r["confident"] > 0.7
    assert n["classes"] <= 3 and r["confident"] > n["confident"] + 0.3
    assert r["frechet"] * 10 < b["frechet"] and r["frechet"] * 20 < n["frechet"]


def test_scorer_is_deterministic():
    x = digits_28("test").tensors[0][:50]
    assert train_digit_scorer(epochs=2).score(x) == train_digit_scorer(epochs=2).score(x)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_shift():
    a = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)).double().numpy()
    assert abs(frechet_distance(a, a)) < 1e-3
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-3)  # squared mean shift, same covariance


def test_score_rejects_wrong_shapes(scorer):
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        scorer.score(torch.rand(4, 3, 32, 32))
