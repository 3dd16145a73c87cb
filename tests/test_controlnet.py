"""Chapter 11's ControlNet and Depth2Image: zero weights start each at the plain model; the shipped ones obey
silhouettes; the training script checks its flags and resumes bit for bit, in both designs."""

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

from course_utils import pretrained, tiny_sd, train_controlnet
from course_utils.controlnet import (
    MODEL_FOLDERS,
    controlnet_pipeline,
    depth_condition,
    depth_loss,
    depth_maps,
    depth_pipeline,
    depth_unet,
    posed_butterflies,
    posed_butterfly,
    sample_controlled,
    silhouette_iou,
)

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


def test_the_height_field_rises_exactly_on_the_silhouette_and_the_pipeline_reads_it_as_the_training_does(base):
    controls = posed_butterflies(range(8))[1]
    depth = depth_maps(controls)
    assert depth.shape == (8, 32, 32) and torch.equal(depth > 0, controls[:, 0] > 0.5)
    assert torch.allclose(depth.amax(dim=(1, 2)), torch.ones(8)), "each map is scaled to reach 1"
    ring = depth[0][depth[0] > 0]
    assert ring.min() < 0.5 < 1 == ring.max(), "it rises inside the outline, not a flat mask"
    pipe = depth_pipeline(base, depth_unet(base.unet))
    made = pipe.prepare_depth_map(torch.zeros(8, 3, 32, 32), depth, 8, False, torch.float32, torch.device("cpu"))
    assert torch.allclose(made, depth_condition(depth, 8)) and made.shape == (8, 1, 8, 8)


def test_a_fresh_depth_unet_draws_what_the_plain_unet_draws_and_its_loss_reads_the_fifth_channel(base):
    from diffusers import DDPMScheduler, StableDiffusionImg2ImgPipeline

    fresh = depth_unet(base.unet)
    assert fresh.config.in_channels == 5 and (fresh.conv_in.weight[:, 4] == 0).all()
    controls = posed_butterflies(range(3))[1]
    prompts = ["a red butterfly on a blue background", "a green butterfly", ""]
    grey = torch.full_like(controls, 0.5)
    img2img = StableDiffusionImg2ImgPipeline(**{k: base.components[k] for k in ("vae", "text_encoder", "tokenizer",
                                                                                "unet", "scheduler")},
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    plain = tiny_sd.generate(img2img, prompts, steps=5, image=grey, strength=1.0)
    with_depth = sample_controlled(depth_pipeline(base, fresh), prompts, controls, steps=5)
    assert torch.allclose(plain, with_depth, atol=1e-4)
    with torch.no_grad():  # a weight on the new channel makes the loss depend on the map
        fresh.conv_in.weight[:, 4] = 0.5
    scheduler = DDPMScheduler.from_config(base.scheduler.config)
    latents, text = torch.randn(3, 4, 8, 8), torch.randn(3, 77, 64)
    noise, t = torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 900])
    depth = depth_maps(controls)
    assert depth_loss(fresh, scheduler, latents, text, depth, noise, t) != depth_loss(
        fresh, scheduler, latents, text, depth.flip(-1), noise, t)


def test_the_shipped_depth_unet_loads_offline_and_follows_silhouettes(base, monkeypatch):
    from diffusers import StableDiffusionDepth2ImgPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipeline = pretrained.load("tiny-sd-butterflies-depth")
    assert isinstance(pipeline, StableDiffusionDepth2ImgPipeline) and pipeline.unet.config.in_channels == 5
    controls = posed_butterflies(UNSEEN)[1]
    prompts = ["a blue butterfly on a white background"] * len(controls)
    followed = silhouette_iou(sample_controlled(pipeline, prompts, controls), controls).mean()
    free = silhouette_iou(tiny_sd.generate(base, prompts, steps=20), controls).mean()
    assert followed > free + 0.2, (followed, free)
    folder = pretrained.path("tiny-sd-butterflies-depth")
    weights = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
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


def test_every_bad_flag_is_named_at_once(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # main in this process: the checks stop it before anything is built
        train_controlnet.main(["--output_dir", str(tmp_path / "a"), *FAST, "--learning_rate", "3",
                               "--max_train_steps", "0", "--lr_scheduler", "fast", "--pretrained_model_name_or_path",
                               str(tmp_path), "--design", "deep", "--seed", "x"])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert stop.value.code == 2 and not out.out and all(line.startswith("error: ") for line in lines), lines
    assert len(lines) == 6, lines
    for flag in ("--learning_rate 3", "--max_train_steps 0", "--lr_scheduler 'fast'", "--pretrained_model_name_or_path",
                 "--design 'deep'", "--seed 'x'"):
        assert any(flag in line for line in lines), (flag, lines)


@pytest.mark.parametrize("design", ["controlnet", "depth"])
def test_a_killed_run_resumes_and_ends_with_the_same_weights_bit_for_bit(tmp_path, design, capfd):
    steps = ["--max_train_steps", "12", "--checkpointing_steps", "3", "--design", design]
    folder = MODEL_FOLDERS[design]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (OMP_NUM_THREADS=1): the same sums, bit for bit
    try:  # the uninterrupted run and the resumed one in this process (no new process to import torch into)
        train_controlnet.main(["--output_dir", str(tmp_path / "whole"), *FAST, *steps])
        split = _script(tmp_path / "split", *steps)
        deadline = time.time() + 300
        while not list((tmp_path / "split" / "checkpoints").glob("checkpoint-*")):  # kill after its first checkpoint
            assert split.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.05)
        split.send_signal(signal.SIGKILL)
        split.wait()
        assert not (tmp_path / "split" / folder).exists()
        capfd.readouterr()
        train_controlnet.main(["--output_dir", str(tmp_path / "split"), *FAST, *steps, "--resume_from_checkpoint",
                               "latest"])
    finally:
        torch.set_num_threads(threads)
    out = capfd.readouterr()
    assert "resumed at step" in out.out + out.err, out
    a = load_file(tmp_path / "whole" / folder / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "split" / folder / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads((tmp_path / run / "training_log.json").read_text()) for run in ("whole", "split")]
    assert logs[0]["iou"] == logs[1]["iou"] and len(logs[0]["iou"][design]) == 2  # the same validation samples
    logged = [[step for step, _ in log["losses"][design]] for log in logs]
    assert logged[0] == logged[1] == [1, 12]  # the losses logged at the same steps (a resumed mean covers fewer)
