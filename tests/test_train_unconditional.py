"""The chapter-5 training script: diffusers-compatible flags, bad data, kill-and-resume, two processes, EMA.

A run that is killed or launched as two processes starts the script as a learner does, in a subprocess; the
others call its ``main`` in the test's own process (``run_here``), which skips the ~8 s of importing torch and
diffusers that every new process pays."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from course_utils import train_checks
from course_utils import train_unconditional as tu
from course_utils.cli import parse
from course_utils.diffusion import default_unet
from course_utils.runs import list_checkpoints

FAST = ["--resolution", "16", "--train_batch_size", "4", "--eval_batch_size", "4", "--ddpm_num_steps", "50",
        "--ddpm_num_inference_steps", "4", "--lr_warmup_steps", "0", "--learning_rate", "1e-3", "--seed", "0"]


@pytest.fixture
def image_folder(butterfly_folder) -> Path:
    """Sixteen small synthetic butterflies as PNGs."""
    return butterfly_folder(16, 24)


def run_script(*args: str, launcher: list[str] | None = None, extra_env: dict | None = None) -> subprocess.Popen:
    """Start the script in a subprocess (offline, unbuffered); the caller waits or kills."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", **(extra_env or {})}
    cmd = (launcher or [sys.executable, "-m"]) + ["course_utils.train_unconditional", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def run_here(capfd, *args: str) -> tuple[int, str]:
    """``main`` with these flags in this process: its exit code (0, or a ``SystemExit``'s: a message counts as 1,
    printed as the interpreter would) and what it printed on stdout and stderr."""
    capfd.readouterr()
    try:
        tu.main(list(args))
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    out = capfd.readouterr()
    return code, out.out + out.err


def test_flags_and_defaults_match_the_diffusers_example():
    args = parse(tu.build_parser(), ["--train_data_dir", "x"])[0]
    expected = dict(output_dir="ddpm-model-64", resolution=64, train_batch_size=16, eval_batch_size=16, num_epochs=100,
                    save_images_epochs=10, save_model_epochs=10, gradient_accumulation_steps=1, learning_rate=1e-4,
                    lr_scheduler="cosine", lr_warmup_steps=500, adam_beta1=0.95, adam_beta2=0.999,
                    adam_weight_decay=1e-6, adam_epsilon=1e-8, use_ema=False, ema_inv_gamma=1.0, ema_power=0.75,
                    ema_max_decay=0.9999, logger="tensorboard", logging_dir="logs", mixed_precision="no",
                    prediction_type="epsilon", ddpm_num_steps=1000, ddpm_num_inference_steps=1000,
                    ddpm_beta_schedule="linear", checkpointing_steps=500, checkpoints_total_limit=None,
                    resume_from_checkpoint=None, center_crop=False, random_flip=False, push_to_hub=False,
                    seed=None, max_train_steps=None)
    assert {k: getattr(args, k) for k in expected} == expected
    every, _ = parse(tu.build_parser(), [
        "--dataset_name", "huggan/smithsonian_butterflies_subset", "--dataset_config_name", "default",
        "--model_config_name_or_path", "cfg", "--output_dir", "o", "--overwrite_output_dir", "--cache_dir", "c",
        "--resolution", "32", "--center_crop", "--random_flip", "--train_batch_size", "8", "--eval_batch_size", "4",
        "--dataloader_num_workers", "2", "--num_epochs", "3", "--save_images_epochs", "1", "--save_model_epochs", "2",
        "--gradient_accumulation_steps", "2", "--learning_rate", "3e-4", "--lr_scheduler", "constant",
        "--lr_warmup_steps", "10", "--adam_beta1", "0.9", "--adam_beta2", "0.99", "--adam_weight_decay", "0.01",
        "--adam_epsilon", "1e-7", "--use_ema", "--ema_inv_gamma", "2", "--ema_power", "0.5", "--ema_max_decay", "0.99",
        "--push_to_hub", "--hub_model_id", "me/model", "--hub_private_repo", "--logger", "tensorboard",
        "--logging_dir", "l", "--mixed_precision", "bf16", "--prediction_type", "sample", "--ddpm_num_steps", "500",
        "--ddpm_num_inference_steps", "50", "--ddpm_beta_schedule", "squaredcos_cap_v2", "--checkpointing_steps", "7",
        "--checkpoints_total_limit", "2", "--resume_from_checkpoint", "latest", "--seed", "1", "--max_train_steps", "9",
    ])
    assert (every.resolution, every.gradient_accumulation_steps, every.ema_power) == (32, 2, 0.5)
    assert every.max_train_steps == 9 and every.checkpoints_total_limit == 2
    assert every.center_crop and every.random_flip and every.use_ema and every.push_to_hub


@pytest.mark.parametrize("argv, message", [
    ([], "--train_data_dir"),
    (["--train_data_dir", "x", "--hub_token", "hf_secret"], "HF_TOKEN"),
    (["--train_data_dir", "x", "--checkpointing_steps", "0"], "checkpointing_steps"),
])
def test_bad_flags_are_refused_with_a_reason(argv, message):
    problems = train_checks.unconditional(tu.build_parser(), argv)[1]
    assert any(message in p for p in problems) and not any("hf_secret" in p for p in problems)


@pytest.mark.parametrize("resolution, levels", [(8, 2), (16, 3), (32, 4), (64, 5), (128, 6)])
def test_default_unet_fits_the_resolution(resolution, levels):
    model, described = default_unet(resolution)
    assert len(model.config.block_out_channels) == levels and str(levels) in described
    with torch.no_grad():
        x = torch.randn(1, 3, resolution, resolution)
        assert model(x, 10).sample.shape == x.shape


def test_a_bad_folder_stops_with_one_line_naming_every_bad_file(image_folder, tmp_path, capfd):
    (image_folder / "broken.png").write_bytes(b"not a png")
    data = (image_folder / "b00.png").read_bytes()
    (image_folder / "truncated.png").write_bytes(data[: len(data) // 2])
    code, out = run_here(capfd, "--train_data_dir", str(image_folder), "--output_dir", str(tmp_path / "o"), *FAST)
    assert code != 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("error:") and "broken.png" in last and "truncated.png" in last and "skip_bad_images" in last


def test_skip_bad_images_trains_on_the_rest(image_folder, tmp_path, capfd):
    (image_folder / "broken.png").write_bytes(b"not a png")
    out_dir = tmp_path / "o"
    with pytest.warns(UserWarning, match="skipping 1 unreadable file.*broken.png"):  # a warning names it
        code, out = run_here(capfd, "--train_data_dir", str(image_folder), "--output_dir", str(out_dir),
                             "--skip_bad_images", "--max_train_steps", "2", *FAST)
    assert code == 0 and (out_dir / "model_index.json").is_file(), out


def test_killed_run_resumes_from_its_last_checkpoint_and_finishes(image_folder, tmp_path, capfd):
    out_dir = tmp_path / "run"
    common = ["--train_data_dir", str(image_folder), "--output_dir", str(out_dir), "--max_train_steps", "24",
              "--checkpointing_steps", "4", "--checkpoints_total_limit", "2", "--save_images_epochs", "100",
              "--save_model_epochs", "100", *FAST]
    proc = run_script(*common)
    deadline = time.time() + 180
    while not (out_dir / "checkpoint-8").is_dir():  # wait for the second checkpoint, then kill without warning
        assert proc.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [int(p.name.split("-")[1]) for p in list_checkpoints(out_dir)]
    assert done and max(done) >= 8 and not (out_dir / "model_index.json").exists()
    code, out = run_here(capfd, *common, "--resume_from_checkpoint", "latest")  # in this process: one import less
    assert code == 0, out
    assert f"resumed from {out_dir / f'checkpoint-{max(done)}'} at step {max(done)}" in out
    final = list_checkpoints(out_dir)
    assert [p.name for p in final] == ["checkpoint-20", "checkpoint-24"]  # total limit 2 kept the newest
    assert json.loads((final[-1] / "course_step.json").read_text()) == {"step": 24}
    assert (out_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporary folders left
    log = json.loads((out_dir / "training_log.json").read_text())  # the losses of both parts, one row per epoch
    steps = [step for step, _ in log["losses"]["unet"]]
    assert steps == sorted(set(steps)) and steps[-1] == 24 and steps[0] < max(done)
    assert log["args"]["max_train_steps"] == "24" and log["seconds"]["unet"] > 0


def test_ema_weights_are_saved_and_differ_from_the_raw_weights(image_folder, tmp_path, capfd):
    out_dir = tmp_path / "ema"
    code, out = run_here(capfd, "--train_data_dir", str(image_folder), "--output_dir", str(out_dir), "--use_ema",
                         "--ema_max_decay", "0.9", "--max_train_steps", "6", "--checkpointing_steps", "6", *FAST)
    assert code == 0, out
    saved = load_file(out_dir / "unet" / "diffusion_pytorch_model.safetensors")  # the EMA weights
    raw = load_file(out_dir / "checkpoint-6" / "model.safetensors")  # the trained model in the training state
    assert saved.keys() == raw.keys()
    assert any(not torch.allclose(saved[k], raw[k]) for k in saved)
    assert (out_dir / "samples" / "epoch_0002.png").is_file()
    with Image.open(out_dir / "samples" / "epoch_0002.png") as grid:
        assert grid.size == (4 * 16, 16)


def test_two_cpu_processes_save_once_and_log_once(image_folder, tmp_path):
    out_dir = tmp_path / "ddp"
    # `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate 1.15 needs mpirun for more);
    # --multi_gpu with ACCELERATE_USE_CPU=1 starts two processes that talk over gloo on the CPU.
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
    proc = run_script("--train_data_dir", str(image_folder), "--output_dir", str(out_dir), "--max_train_steps", "4",
                      "--checkpointing_steps", "2", *FAST, launcher=launcher, extra_env={"ACCELERATE_USE_CPU": "1"})
    out = finish(proc, timeout=300)
    assert proc.returncode == 0, out
    assert "2 process(es) on cpu (MULTI_CPU)" in out
    assert out.count("a UNet sized for 16 px") == 1  # printed by the main process only
    events = list((out_dir / "logs").rglob("events.out.tfevents.*"))  # name: ...tfevents.<time>.<host>.<pid>.<n>
    assert events and len({e.name.split(".")[-2] for e in events}) == 1  # all written by one process
    assert sorted(p.name for p in (out_dir / "samples").iterdir()) == ["epoch_0002.png"]
    assert [p.name for p in list_checkpoints(out_dir)] == ["checkpoint-2", "checkpoint-4"]
    assert sorted((out_dir / "checkpoint-4").glob("random_states_*.pkl")) == [
        out_dir / "checkpoint-4" / "random_states_0.pkl", out_dir / "checkpoint-4" / "random_states_1.pkl"]


def test_data_on_device_fast_path_trains_and_resumes_at_the_right_step(image_folder, tmp_path, capfd):
    out_dir = tmp_path / "fast"
    common = ["--train_data_dir", str(image_folder), "--output_dir", str(out_dir), "--data_on_device", "yes",
              "--center_crop", "--random_flip", "--checkpointing_steps", "3", "--save_images_epochs", "100", *FAST]
    code, out = run_here(capfd, *common, "--max_train_steps", "6")
    assert code == 0, out
    assert "data on cpu: (16, 3, 16, 16) uint8, decoded once" in out
    code, out = run_here(capfd, *common, "--max_train_steps", "9", "--resume_from_checkpoint", "latest")
    assert code == 0, out
    assert "at step 6" in out
    assert json.loads((list_checkpoints(out_dir)[-1] / "course_step.json").read_text()) == {"step": 9}


def test_data_on_device_refuses_a_random_crop_of_non_square_images(tmp_path, capfd):
    folder = tmp_path / "wide"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 24), (i * 60, 0, 0)).save(folder / f"w{i}.png")
    code, out = run_here(capfd, "--train_data_dir", str(folder), "--output_dir", str(tmp_path / "o"),
                         "--data_on_device", "yes", "--max_train_steps", "1", *FAST)
    assert code != 0 and out.strip().splitlines()[-1].startswith("error: --data_on_device yes needs")


@pytest.fixture
def digit_folder(tmp_path) -> Path:
    """Twelve 16-px grayscale digits in one sub-folder per class (0, 1, 2): labelled data."""
    from course_utils.data import digits_28

    images, labels = digits_28("all").tensors
    folder = tmp_path / "digits"
    for cls in range(3):
        (folder / str(cls)).mkdir(parents=True)
        for i, x in enumerate(images[labels == cls][:4]):
            Image.fromarray((x[0] * 255).round().byte().numpy(), mode="L").resize((16, 16)).save(
                folder / str(cls) / f"{i}.png")
    return folder


def test_class_conditional_grayscale_run_saves_a_conditioned_unet_and_its_class_names(digit_folder, tmp_path, capfd):
    config = tmp_path / "unet.json"
    config.write_text(json.dumps(dict(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                                      block_out_channels=[8, 16], norm_num_groups=4,
                                      down_block_types=["DownBlock2D"] * 2, up_block_types=["UpBlock2D"] * 2)))
    out_dir = tmp_path / "cond"
    code, out = run_here(capfd, "--train_data_dir", str(digit_folder), "--output_dir", str(out_dir),
                         "--model_config_name_or_path", str(config), "--class_conditional",
                         "--max_train_steps", "3", "--checkpointing_steps", "3", *FAST)
    assert code == 0 and "class-conditional: 3 classes ['0', '1', '2']" in out, out
    unet = json.loads((out_dir / "unet" / "config.json").read_text())
    assert unet["num_class_embeds"] == 4 and unet["in_channels"] == 1  # 3 digits + "no class"
    assert json.loads((out_dir / "class_names.json").read_text()) == ["0", "1", "2"]
    grid = Image.open(sorted((out_dir / "samples").glob("epoch_*.png"))[-1])
    assert grid.height > 2 * grid.width / 4 - 1  # one row per class: 3 rows of 4 samples


def test_class_conditional_needs_labelled_images(image_folder, tmp_path, capfd):
    code, out = run_here(capfd, "--train_data_dir", str(image_folder), "--output_dir", str(tmp_path / "o"),
                         "--class_conditional", "--max_train_steps", "1", *FAST)
    assert code == 2 and "error: --class_conditional needs labelled images" in out


def test_class_drop_prob_must_be_a_probability():
    problems = train_checks.unconditional(tu.build_parser(), ["--train_data_dir", "x", "--class_drop_prob", "1.5"])[1]
    assert any(p.startswith("error: --class_drop_prob 1.5: must be in [0, 1)") for p in problems)


def test_flow_matching_run_saves_a_flow_scheduler_that_the_plain_loop_samples(image_folder, tmp_path, capfd):
    from diffusers import DDPMPipeline, FlowMatchEulerDiscreteScheduler

    out_dir = tmp_path / "flow"
    code, out = run_here(capfd, "--train_data_dir", str(image_folder), "--output_dir", str(out_dir),
                         "--prediction_type", "flow", "--weighting_scheme", "logit_normal", "--flow_shift", "2",
                         "--max_train_steps", "3", "--checkpointing_steps", "3",
                         *[f for f in FAST if f != "--ddpm_num_steps" and f != "50"])
    assert code == 0, out
    pipeline = DDPMPipeline.from_pretrained(out_dir)
    assert isinstance(pipeline.scheduler, FlowMatchEulerDiscreteScheduler) and pipeline.scheduler.config.shift == 2
    scheduler, unet = pipeline.scheduler, pipeline.unet
    scheduler.set_timesteps(2)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    assert x.shape == (1, 3, 16, 16) and torch.isfinite(x).all()
    assert (out_dir / "samples" / "epoch_0001.png").is_file()


def test_reflow_pairs_are_the_pretrained_flows_euler_samples_of_their_own_noise():
    from types import SimpleNamespace

    from accelerate import Accelerator

    from course_utils import pretrained
    from course_utils.sampling import sample_ddpm

    teacher = pretrained.load("digits-28-flow")
    args = SimpleNamespace(reflow_pairs=6, reflow_steps=2, seed=3, train_batch_size=4,
                           pretrained_model_name_or_path="digits-28-flow")
    loader, images = tu.reflow_loader(args, Accelerator(cpu=True), teacher.unet, teacher.scheduler)
    noise = torch.randn((6, 1, 28, 28), generator=torch.Generator().manual_seed(3))
    expected = sample_ddpm(teacher.unet, teacher.scheduler, 6, 2, noise=noise)
    assert torch.equal(images, ((expected + 1) * 127.5).round().to(torch.uint8))
    loader.set_epoch(0)
    seen = 0
    for batch in loader:  # shuffled, but every sample still sits beside its own noise, unflipped
        assert set(batch) == {"images", "noise"}, "reflow's noise is its own field, not the labels'"
        x, z = batch["images"], batch["noise"]
        for xi, zi in zip(x, z, strict=True):
            i = next(i for i in range(6) if torch.equal(noise[i], zi))
            assert torch.equal(xi, images[i].float() / 127.5 - 1)
            seen += 1
    assert seen == 6
