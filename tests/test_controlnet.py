"""Chapter 11's ControlNet: zero convolutions start it at the plain model; the shipped one obeys silhouettes; the
training script checks its flags and resumes bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from course_utils import pretrained, tiny_sd
from course_utils.controlnet import controlnet_pipeline, posed_butterflies, posed_butterfly, silhouette_iou

NAME = "tiny-sd-butterflies-controlnet"
UNSEEN = range(400_000, 400_016)  # posed drawings neither training nor the script's validation used


@pytest.fixture(scope="module")
def base():
    return pretrained.load("tiny-sd-butterflies")


def test_posed_butterflies_vary_in_place_and_their_controls_are_their_silhouettes():
    images, controls = posed_butterflies(range(64))
    assert images.shape == controls.shape == (64, 3, 32, 32)
    assert set(controls.unique().tolist()) == {0.0, 1.0} and (controls[:, 0] == controls[:, 2]).all()
    assert silhouette_iou(images, controls).mean() > 0.8  # the drawing's own mask matches its control
    centres = torch.stack([torch.nonzero(c[0]).float().mean(0) for c in controls])
    assert centres.std(0).min() > 3, "the butterflies should be all over the frame, not near the middle"
    areas = controls[:, 0].sum((1, 2))
    assert areas.max() > 2.5 * areas.min(), "the butterflies should vary in size"
    assert (np.asarray(posed_butterfly(5)[0]) == np.asarray(posed_butterfly(5)[0])).all()  # same index, same pair


def test_a_fresh_controlnet_changes_nothing_the_zero_convolutions(base):
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(16, 32, 64))
    controls = posed_butterflies(range(3))[1]
    prompts = ["a red butterfly on a blue background", "a green butterfly", ""]
    plain = tiny_sd.generate(base, prompts, steps=5)
    controlled = tiny_sd.generate(controlnet_pipeline(base, controlnet), prompts, steps=5, image=controls)
    assert torch.equal(plain, controlled)


def test_the_shipped_controlnet_loads_offline_and_follows_silhouettes(base, monkeypatch):
    from diffusers import StableDiffusionControlNetPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipeline = pretrained.load(NAME)
    assert isinstance(pipeline, StableDiffusionControlNetPipeline)
    assert pipeline.controlnet.dtype == torch.float32
    controls = posed_butterflies(UNSEEN)[1]
    prompts = ["a blue butterfly on a white background"] * len(controls)
    followed = silhouette_iou(tiny_sd.generate(pipeline, prompts, steps=20, image=controls), controls).mean()
    free = silhouette_iou(tiny_sd.generate(base, prompts, steps=20), controls).mean()
    assert followed > free + 0.25, (followed, free)
    folder = pretrained.path(NAME)
    weights = load_file(folder / "controlnet" / "diffusion_pytorch_model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float16}
    record = json.loads((folder / "training.json").read_text())
    card = (folder / "README.md").read_text()
    for fact in (record["command"], record["device"], record["date"]):
        assert fact in card, fact


FAST = ["--num_images", "16", "--train_batch_size", "4", "--validation_steps", "1000", "--num_validation_images", "2",
        "--validation_inference_steps", "2", "--lr_warmup_steps", "1"]


def _script(out, *flags) -> subprocess.Popen:
    args = [sys.executable, "-m", "course_utils.train_controlnet", "--output_dir", str(out), *FAST, *flags]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_every_bad_flag_is_named_at_once(tmp_path):
    run = _script(tmp_path / "a", "--learning_rate", "3", "--max_train_steps", "0", "--lr_scheduler", "fast",
                  "--pretrained_model_name_or_path", str(tmp_path))
    lines = run.communicate()[0].strip().splitlines()
    assert run.returncode == 2 and all(line.startswith("error: ") for line in lines), lines
    for flag in ("--learning_rate 3", "--max_train_steps 0", "--lr_scheduler fast", "--pretrained_model_name_or_path"):
        assert any(flag in line for line in lines), (flag, lines)


def test_a_killed_run_resumes_and_ends_with_the_same_weights_bit_for_bit(tmp_path):
    steps = ["--max_train_steps", "30", "--checkpointing_steps", "3"]
    whole = _script(tmp_path / "whole", *steps)
    assert whole.wait() == 0, whole.communicate()[0]
    split = _script(tmp_path / "split", *steps)
    deadline = time.time() + 300
    while not list((tmp_path / "split" / "checkpoints").glob("checkpoint-*")):  # kill after its first checkpoint
        assert split.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    split.send_signal(signal.SIGKILL)
    split.wait()
    assert not (tmp_path / "split" / "controlnet").exists()
    resumed = _script(tmp_path / "split", *steps, "--resume_from_checkpoint", "latest")
    out = resumed.communicate()[0]
    assert resumed.returncode == 0 and "resumed at step" in out, out
    a = load_file(tmp_path / "whole" / "controlnet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "split" / "controlnet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads((tmp_path / run / "training_log.json").read_text()) for run in ("whole", "split")]
    assert logs[0]["iou"] == logs[1]["iou"]  # the same validation samples at the end
