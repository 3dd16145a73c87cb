"""Chapter 8's claim about the model cache: offline, a model that is not cached fails at once, not after timeouts."""

import time

import pytest
from diffusers import StableDiffusionPipeline


def test_a_model_missing_from_the_cache_fails_fast_with_local_files_only(tmp_path):
    start = time.perf_counter()
    with pytest.raises(OSError):
        StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", local_files_only=True,
                                                cache_dir=tmp_path)  # an empty cache, never the learner's
    assert time.perf_counter() - start < 5, "the notebook tells the learner it answers at once"
