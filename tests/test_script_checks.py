"""The entry points check every flag, path and push setting before any work: one ``error:`` line per problem."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import nbformat
import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

from course_tools import run_course
from course_utils import hub, pretrained, train_checks, train_controlnet, train_sd3, train_text_to_image
from course_utils import train_unconditional as tu

TOKEN = "hf_SECRETfake123"  # planted in the environment: it must never show up anywhere
TINY = dict(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=[8, 16],
            norm_num_groups=4, down_block_types=["DownBlock2D"] * 2, up_block_types=["UpBlock2D"] * 2)


@pytest.fixture(autouse=True)
def offline_with_a_token(monkeypatch):
    """Every test runs offline with a fake token in HF_TOKEN."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture
def images(butterfly_folder) -> Path:
    """Four small synthetic butterflies as PNGs."""
    return butterfly_folder(4, 32)


def problems(*argv: str) -> list[str]:
    """The script's check lines for a command line."""
    return train_checks.unconditional(tu.build_parser(), list(argv))[1]


def write_config(folder: Path, **changes) -> Path:
    """A tiny UNet2DModel config (two levels, 16 px) with ``changes``, saved as ``folder/config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**TINY, **changes}))
    return folder


def write_checkpoint(folder: Path, config: dict, resolution: int, ema: bool = False) -> Path:
    """A checkpoint folder as the script writes it: weights, step, resolution and UNet config (and EMA state)."""
    folder.mkdir(parents=True)
    save_file(UNet2DModel.from_config(config).state_dict(), folder / "model.safetensors")
    (folder / "course_step.json").write_text(json.dumps({"step": 3}))
    (folder / "course_model.json").write_text(json.dumps({"resolution": resolution, "unet": config}))
    if ema:
        (folder / "custom_checkpoint_0.pkl").write_bytes(b"")
    return folder


def all_text(folder: Path) -> bytes:
    """Every file under ``folder``, concatenated (to look for a token in it)."""
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


# ---- Values: types, ranges, choices, combinations ----------------------------------------------------------


@pytest.mark.parametrize("flags, expected", [
    (["--resolution", "abc"], "--resolution 'abc': not a whole number"),
    (["--learning_rate", "fast"], "--learning_rate 'fast': not a number"),
    (["--resolution", "0"], "--resolution 0: must be at least 1 (default: 64)"),
    (["--train_batch_size", "0"], "--train_batch_size 0: must be at least 1"),
    (["--eval_batch_size", "-1"], "--eval_batch_size -1: must be at least 1"),
    (["--num_epochs", "0"], "--num_epochs 0: must be at least 1"),
    (["--save_images_epochs", "0"], "--save_images_epochs 0: must be at least 1"),
    (["--save_model_epochs", "0"], "--save_model_epochs 0: must be at least 1"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0: must be at least 1"),
    (["--checkpointing_steps", "0"], "--checkpointing_steps 0: must be at least 1"),
    (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit 0: must be at least 1"),
    (["--max_train_steps", "0"], "--max_train_steps 0: must be at least 1"),
    (["--ddpm_num_inference_steps", "0"], "--ddpm_num_inference_steps 0: must be at least 1"),
    (["--dataloader_num_workers", "-1"], "--dataloader_num_workers -1: must be 0 or more"),
    (["--lr_warmup_steps", "-5"], "--lr_warmup_steps -5: must be 0 or more"),
    (["--learning_rate", "nan"], "--learning_rate nan: must be a finite number above 0"),
    (["--learning_rate", "inf"], "--learning_rate inf: must be a finite number above 0"),
    (["--learning_rate", "0"], "--learning_rate 0.0: must be a finite number above 0"),
    (["--adam_epsilon", "-0.5"], "--adam_epsilon -0.5: must be a finite number above 0"),
    (["--adam_weight_decay", "-0.1"], "--adam_weight_decay -0.1: must be a finite number, 0 or more"),
    (["--adam_beta1", "1"], "--adam_beta1 1.0: must be in [0, 1)"),
    (["--adam_beta2", "-0.1"], "--adam_beta2 -0.1: must be in [0, 1)"),
    (["--use_ema", "--ema_max_decay", "1.5"], "--ema_max_decay 1.5: must be in [0, 1)"),
    (["--use_ema", "--ema_power", "0"], "--ema_power 0.0: must be a finite number above 0"),
    (["--use_ema", "--ema_inv_gamma", "-1"], "--ema_inv_gamma -1.0: must be a finite number above 0"),
    (["--dataset_name", "huggan/smithsonian_butterflies_subset", "--class_conditional", "--class_drop_prob", "1.5"],
     "--class_drop_prob 1.5: must be in [0, 1)"),
    (["--seed", "-1"], "--seed -1: must be in [0, 2**32)"),
    (["--snr_gamma", "0"], "--snr_gamma 0.0: must be a finite number above 0"),
    (["--snr_gamma", "five"], "--snr_gamma 'five': not a number"),
    (["--prediction_type", "flow", "--snr_gamma", "5"], "--snr_gamma with --prediction_type flow"),
    (["--lr_scheduler", "cosin"], "--lr_scheduler 'cosin': not one of linear, cosine,"),
    (["--mixed_precision", "fp32"], "--mixed_precision 'fp32': not one of no, fp16, bf16"),
    (["--prediction_type", "noise"], "--prediction_type 'noise': not one of epsilon, sample, v_prediction"),
    (["--ddpm_beta_schedule", "cosine"], "--ddpm_beta_schedule 'cosine': not one of linear,"),
    (["--logger", "mlflow"], "--logger 'mlflow': not one of tensorboard, wandb"),
    (["--data_on_device", "maybe"], "--data_on_device 'maybe': not one of auto, yes, no"),
    (["--ddpm_num_inference_steps", "2000"], "--ddpm_num_inference_steps 2000 is more than --ddpm_num_steps 1000"),
    (["--resolution", "20"], "--resolution 20: the default UNet needs a multiple of 8"),
    (["--hub_token", TOKEN], "--hub_token is refused"),
    (["--lerning_rate", "1e-4"], "'--lerning_rate 1e-4': not a flag of this script; did you mean --learning_rate?"),
    (["--dataset_config_name", "default"], "--dataset_config_name only means something with --dataset_name"),
    (["--hub_model_id", "me/model"], "--hub_model_id only means something with --push_to_hub: add --push_to_hub"),
    (["--class_drop_prob", "0.2"], "--class_drop_prob only means something with --class_conditional"),
    (["--ema_max_decay", "0.99"], "--ema_max_decay only means something with --use_ema"),
    (["--weighting_scheme", "logit_normal"], "--weighting_scheme only means something with --prediction_type flow"),
    (["--flow_shift", "3"], "--flow_shift only means something with --prediction_type flow"),
    (["--prediction_type", "flow", "--weighting_scheme", "lognormal"],
     "--weighting_scheme 'lognormal': not one of none, logit_normal, mode; did you mean 'logit_normal'?"),
    (["--prediction_type", "flow", "--ddpm_beta_schedule", "linear"],
     "--ddpm_beta_schedule with --prediction_type flow: flow matching has no beta schedule"),
    (["--prediction_type", "flow", "--flow_shift", "0"], "--flow_shift 0.0: must be a finite number above 0"),
    (["--prediction_type", "flow", "--weighting_scheme", "logit_normal", "--logit_std", "-1"],
     "--logit_std -1.0: must be a finite number above 0"),
])
def test_a_bad_value_is_one_line_naming_flag_and_value(flags, expected, images, tmp_path):
    found = problems("--train_data_dir", str(images), "--output_dir", str(tmp_path / "out"), *flags)
    assert len(found) == 1 and found[0].startswith(f"error: {expected}"), found
    assert TOKEN not in found[0]


def test_choices_suggest_the_close_one(images):
    assert "did you mean 'cosine'?" in problems("--train_data_dir", str(images), "--lr_scheduler", "cosin")[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 needs a GPU: the check only fires without one")
def test_fp16_without_a_gpu_is_refused(images):
    assert "--mixed_precision fp16: needs a GPU" in problems("--train_data_dir", str(images),
                                                              "--mixed_precision", "fp16")[0]


def test_every_problem_is_reported_at_once(images):
    found = problems("--train_data_dir", str(images), "--resolution", "0", "--learning_rate", "nan",
                     "--train_batch_size", "x", "--adam_beta2", "1", "--logger", "nope", "--bogus")
    assert len(found) == 6 and all(p.startswith("error: ") for p in found)


def test_a_flag_without_its_value_is_reported_with_the_other_problems(images):
    found = problems("--train_data_dir", str(images), "--resolution", "--learning_rate", "nan", "--output_dir")
    assert found == ["error: --resolution: no value after it; give one (--resolution VALUE, default 64)",
                     "error: --output_dir: no value after it; give one (--output_dir VALUE, default ddpm-model-64)",
                     "error: --learning_rate nan: must be a finite number above 0 (default: 0.0001)"]


def test_a_negative_number_after_a_flag_is_its_value(images):
    assert problems("--train_data_dir", str(images), "--adam_weight_decay", "-1e-3") == [
        "error: --adam_weight_decay -0.001: must be a finite number, 0 or more (default: 1e-06)"]


def test_unreadable_images_stop_the_script_with_exit_2_before_the_output_folder_is_made(images, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        tu.main(["--train_data_dir", str(images), "--output_dir", str(out), "--resolution", "16"])
    assert stop.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "broken.png" in err[0] and "--skip_bad_images" in err[0]


def test_defaults_and_the_course_notebooks_command_lines_pass(images, tmp_path):
    out = tmp_path / "out"
    assert problems("--train_data_dir", str(images), "--output_dir", str(out)) == []
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "model_index.json").write_text("{}")
    # chapter 5: the same folder again, replaced (--overwrite_output_dir) or continued (--resume_from_checkpoint)
    assert problems("--train_data_dir", str(images), "--output_dir", str(out), "--overwrite_output_dir") == []
    (out / "checkpoint-4").rmdir()
    assert problems("--train_data_dir", str(images), "--output_dir", str(out), "--resume_from_checkpoint",
                    "latest") == []
    # chapter 6: a fine-tune from the shipped pipeline
    assert problems("--train_data_dir", str(images), "--output_dir", str(tmp_path / "ft"), "--resolution", "32",
                    "--pretrained_model_name_or_path", str(pretrained.path("butterflies-32"))) == []


@pytest.mark.parametrize("script", ["unconditional", "text_to_image", "controlnet"])
def test_every_script_names_a_file_given_as_output_folder_and_a_flag_without_its_value(script, images, tmp_path):
    module = {"unconditional": tu, "text_to_image": train_text_to_image, "controlnet": train_controlnet}[script]
    (tmp_path / "file.txt").write_text("not a folder")
    data = ["--train_data_dir", str(images)] if script == "unconditional" else []
    check = getattr(train_checks, script)
    found = check(module.build_parser(), [*data, "--output_dir", str(tmp_path / "file.txt"), "--learning_rate"])[1]
    assert found == ["error: --learning_rate: no value after it; give one (--learning_rate VALUE, default "
                     f"{module.build_parser().get_default('learning_rate')})",
                     f"error: --output_dir {tmp_path / 'file.txt'}: a file, not a folder; choose a folder name (or "
                     "move the file away)"], found


# ---- Data, output and resume paths --------------------------------------------------------------------------


@pytest.mark.parametrize("case, expected", [
    ("no data", "give --train_data_dir (a folder of images) or --dataset_name"),
    ("data missing", "--train_data_dir {tmp}/missing: no such folder"),
    ("data is a file", "--train_data_dir {tmp}/file.txt: a file, not a folder"),
    ("no class folders", "--class_conditional needs labelled images"),
    ("no images", "--train_data_dir {tmp}/run: no image files"),
    ("output is a file", "--output_dir {tmp}/file.txt: a file, not a folder"),
    ("output under a file", "--output_dir {tmp}/file.txt/out: {tmp}/file.txt is a file"),
    ("output inside the data", "--output_dir {tmp}/images/out and --train_data_dir {tmp}/images overlap"),
    ("another run's pipeline", "--output_dir {tmp}/run: holds another run (model_index.json)"),
    ("another run's checkpoints", "--output_dir {tmp}/run: holds another run (1 checkpoint folder(s))"),
    ("overwrite the current folder", "--output_dir {tmp}/run --overwrite_output_dir would delete {tmp}/run, which "
                                     "holds the current folder"),
    ("unwritable", "--output_dir {tmp}/locked/out: cannot write in {tmp}/locked"),
    ("no such checkpoint", "--resume_from_checkpoint {tmp}/nope: no such checkpoint folder"),
    ("not a checkpoint", "--resume_from_checkpoint {tmp}/images: {tmp}/images is not a complete checkpoint"),
    ("checkpoint at another resolution", "--resume_from_checkpoint latest: checkpoint-3 was trained at "
                                         "--resolution 32, this run asks for 16"),
    ("checkpoint without EMA", "--resume_from_checkpoint latest: checkpoint-3 was saved without --use_ema; drop "
                               "--use_ema"),
])
def test_a_bad_path_is_one_line_naming_it(case, expected, images, tmp_path, monkeypatch):
    tmp = tmp_path.resolve()
    (tmp / "file.txt").write_text("not a folder")
    run = tmp / "run"
    config = write_config(tmp / "tiny")
    argv = {"--train_data_dir": str(images), "--output_dir": str(run)}
    extra: list[str] = []
    if case == "no data":
        del argv["--train_data_dir"]
    elif case == "data missing":
        argv["--train_data_dir"] = str(tmp / "missing")
    elif case == "data is a file":
        argv["--train_data_dir"] = str(tmp / "file.txt")
    elif case == "no images":
        (run / "notes").mkdir(parents=True)
        (run / "notes" / "readme.txt").write_text("")
        argv = {"--train_data_dir": str(run), "--output_dir": str(tmp / "out")}
    elif case == "no class folders":
        extra = ["--class_conditional"]
    elif case == "output is a file":
        argv["--output_dir"] = str(tmp / "file.txt")
    elif case == "output under a file":
        argv["--output_dir"] = str(tmp / "file.txt" / "out")
    elif case == "output inside the data":
        argv["--output_dir"] = str(images / "out")
    elif case == "another run's pipeline":
        run.mkdir()
        (run / "model_index.json").write_text("{}")
    elif case == "another run's checkpoints":
        (run / "checkpoint-3").mkdir(parents=True)
    elif case == "overwrite the current folder":
        (run / "notes").mkdir(parents=True)
        monkeypatch.chdir(run / "notes")
        extra = ["--overwrite_output_dir"]
    elif case == "unwritable":
        (tmp / "locked").mkdir()
        argv["--output_dir"] = str(tmp / "locked" / "out")
        if os.geteuid() == 0:  # root writes anywhere: make the permission check see a locked folder
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp / "locked" and real_access(p, mode))
        else:
            (tmp / "locked").chmod(0o500)
    elif case == "no such checkpoint":
        extra = ["--resume_from_checkpoint", str(tmp / "nope")]
    elif case == "not a checkpoint":
        extra = ["--resume_from_checkpoint", str(images)]
    elif "checkpoint" in case:
        write_checkpoint(run / "checkpoint-3", TINY, resolution=32 if "resolution" in case else 16)
        extra = ["--resume_from_checkpoint", "latest", "--model_config_name_or_path", str(config),
                 "--resolution", "16", *(["--use_ema"] if "EMA" in case else [])]
    found = problems(*[x for kv in argv.items() for x in kv], *extra)
    if case == "unwritable" and os.geteuid() != 0:
        (tmp / "locked").chmod(0o700)
    assert len(found) == 1 and found[0].startswith("error: " + expected.format(tmp=tmp)), found


def test_a_resumed_run_is_the_same_run(images, tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path / "tiny")
    write_checkpoint(run / "checkpoint-3", TINY, resolution=16, ema=True)
    assert problems("--train_data_dir", str(images), "--output_dir", str(run), "--resolution", "16",
                    "--model_config_name_or_path", str(config), "--use_ema", "--resume_from_checkpoint", "latest") == []


def test_a_checkpoint_of_another_model_stops_the_resume_with_one_line_naming_it(images, tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run / "checkpoint-3", dict(TINY, block_out_channels=[8, 32]), resolution=16)
    argv = ["--train_data_dir", str(images), "--output_dir", str(run), "--resolution", "16", "--resume_from_checkpoint",
            "latest", "--model_config_name_or_path", str(write_config(tmp_path / "tiny")), "--max_train_steps", "4"]
    assert problems(*argv) == []  # the checks do not compare weights: loading them does
    with pytest.raises(SystemExit) as stop:
        tu.main(argv)
    message = str(stop.value.code)
    assert message.startswith(f"error: --resume_from_checkpoint latest: {run}/checkpoint-3 does not fit this run ("), \
        message
    assert "size mismatch" in message and "\n" not in message and not (run / "checkpoint-4").exists()


def test_a_failed_check_writes_nothing(images, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoint-3").mkdir(parents=True)
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as stop:
        tu.main(["--train_data_dir", str(images), "--output_dir", str(run), "--learning_rate", "nan"])
    assert stop.value.code == 2
    assert sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


# ---- The model: configs, a pretrained pipeline ---------------------------------------------------------------


@pytest.mark.parametrize("case, expected", [
    ("pipeline as config", "--model_config_name_or_path {bf}: Error no file named config.json found in directory "
                           "{bf}; check the path"),
    ("missing config", "--model_config_name_or_path ./no/such/config.json: no such local folder, and the Hub cannot "
                       "be reached (offline)"),
    ("broken JSON", "--model_config_name_or_path {tmp}/broken.json: It looks like the config file at "
                    "'{tmp}/broken.json' is not a valid JSON file"),
    ("too deep", "--resolution 18: the UNet of --model_config_name_or_path {tmp}/cfg halves it 2 times (3 levels), "
                 "so it must be a multiple of 4"),
    ("groups", "--model_config_name_or_path {tmp}/cfg: diffusers cannot build a UNet2DModel from it (num_channels (8) "
               "must be divisible by num_groups (3))"),
    ("channels", "--model_config_name_or_path {tmp}/cfg: in_channels 4, out_channels 4"),
    ("sample size", "--resolution 32 but --model_config_name_or_path {tmp}/cfg has sample_size 16"),
    ("conditioned config", "--model_config_name_or_path {tmp}/cfg: a class-conditioned UNet (num_class_embeds 5): add "
                           "--class_conditional"),
    ("text UNet", "--model_config_name_or_path {tmp}/cfg: a UNet2DConditionModel config"),
    ("unknown block", "--model_config_name_or_path {tmp}/cfg: diffusers cannot build a UNet2DModel from it"),
    ("both", "--model_config_name_or_path with --pretrained_model_name_or_path: the pipeline's UNet has its config; "
             "drop --model_config_name_or_path"),
    ("unet folder", "--pretrained_model_name_or_path {bf}/unet: no unet/ in it, so not a diffusers pipeline; pass the "
                    "pipeline's folder"),
    ("pretrained size", "--resolution 64 but --pretrained_model_name_or_path {bf} has sample_size 32 (the size its "
                        "pipeline generates): pass --resolution 32"),
    ("pretrained schedule", "--ddpm_beta_schedule linear but --pretrained_model_name_or_path {bf} was trained with "
                            "beta_schedule=squaredcos_cap_v2"),
    ("pretrained offline", "--pretrained_model_name_or_path nobody-here/no-such-model: no such local folder, and the "
                           "Hub cannot be reached (offline)"),
    ("pretrained conditioned", "--pretrained_model_name_or_path {dc}: a class-conditioned UNet (num_class_embeds 11)"),
    ("pretrained flow snr", "--snr_gamma with --pretrained_model_name_or_path {df}: a flow-matching pipeline has no "
                            "DDPM noise schedule"),
])
def test_a_model_that_cannot_work_is_one_line(case, expected, images, tmp_path):
    tmp, bf, dc = tmp_path, pretrained.path("butterflies-32"), pretrained.path("digits-28-conditional")
    df = pretrained.path("digits-28-flow")
    (tmp / "broken.json").write_text("{not json")
    changes = {"too deep": dict(sample_size=None, block_out_channels=[8, 16, 16],
                                down_block_types=["DownBlock2D"] * 3, up_block_types=["UpBlock2D"] * 3),
               "groups": dict(norm_num_groups=3),
               "channels": dict(in_channels=4, out_channels=4), "conditioned config": dict(num_class_embeds=5),
               "text UNet": dict(_class_name="UNet2DConditionModel"),
               "unknown block": dict(down_block_types=["NoSuchBlock2D", "DownBlock2D"])}.get(case, {})
    cfg = write_config(tmp / "cfg", **changes)
    resolution = {"too deep": "18", "sample size": "32", "pretrained size": "64", "pretrained conditioned": "28",
                  "pretrained flow snr": "28"}
    model = {"pipeline as config": ["--model_config_name_or_path", str(bf)],
             "missing config": ["--model_config_name_or_path", "./no/such/config.json"],
             "broken JSON": ["--model_config_name_or_path", str(tmp / "broken.json")],
             "both": ["--model_config_name_or_path", str(cfg), "--pretrained_model_name_or_path", str(bf)],
             "unet folder": ["--pretrained_model_name_or_path", str(bf / "unet")],
             "pretrained size": ["--pretrained_model_name_or_path", str(bf)],
             "pretrained schedule": ["--pretrained_model_name_or_path", str(bf), "--ddpm_beta_schedule", "linear"],
             "pretrained offline": ["--pretrained_model_name_or_path", "nobody-here/no-such-model"],
             "pretrained conditioned": ["--pretrained_model_name_or_path", str(dc)],
             "pretrained flow snr": ["--pretrained_model_name_or_path", str(df), "--snr_gamma", "5"],
             }.get(case, ["--model_config_name_or_path", str(cfg)])
    res = resolution.get(case, "32" if "pretrained" in case or case in ("unet folder", "both") else "16")
    found = problems("--train_data_dir", str(images), "--output_dir", str(tmp / "out"), "--resolution", res, *model)
    assert len(found) == 1 and found[0].startswith("error: " + expected.format(tmp=tmp, bf=bf, dc=dc, df=df)), found


def test_fine_tune_starts_from_the_pipeline_and_a_failed_upload_says_how_to_upload_later(
        images, tmp_path, monkeypatch):
    base = pretrained.path("butterflies-32")
    out = tmp_path / "night"
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(hub, "check_push_access", lambda repo_id, default_name="", network=True: "me/night")

    def upload_drops(*args, **kwargs):
        raise ConnectionError(f"connection reset while sending a file (token {TOKEN})")

    monkeypatch.setattr(hub, "upload_pipeline", upload_drops)
    with pytest.raises(SystemExit) as stop:
        tu.main(["--pretrained_model_name_or_path", str(base), "--train_data_dir", str(images), "--resolution", "32",
                 "--output_dir", str(out), "--train_batch_size", "1", "--max_train_steps", "1", "--learning_rate",
                 "1e-9", "--lr_warmup_steps", "0", "--eval_batch_size", "1", "--ddpm_num_inference_steps", "1",
                 "--seed", "0", "--push_to_hub"])
    message = str(stop.value.code)
    assert message.startswith("error: the upload to me/night failed (ConnectionError")
    assert f"saved in {out.resolve()}" in message and "upload_pipeline(" in message and TOKEN not in message
    # the weights are the pipeline's (one step at lr 1e-9), far from a fresh U-Net's; its noise schedule too
    tuned = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    start = {k: v.float() for k, v in load_file(base / "unet" / "diffusion_pytorch_model.safetensors").items()}
    fresh = UNet2DModel.from_config(UNet2DModel.load_config(base / "unet")).state_dict()
    assert max((tuned[k] - start[k]).abs().max().item() for k in start) < 1e-3
    assert (tuned["conv_in.weight"] - fresh["conv_in.weight"]).abs().max() > 0.1
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["beta_schedule"] == "squaredcos_cap_v2"
    assert TOKEN.encode() not in all_text(tmp_path)


def test_out_of_memory_and_interrupts_are_one_line(monkeypatch):
    for raised, expected in ((torch.OutOfMemoryError("CUDA out of memory"), "error: out of memory: lower "
                              "--train_batch_size"), (KeyboardInterrupt(), "error: interrupted")):
        def fail(argv, raised=raised):
            raise raised

        monkeypatch.setattr(tu, "main", fail)
        with pytest.raises(SystemExit) as stop:
            tu.cli()
        assert str(stop.value.code).startswith(expected)


# ---- Pushing: checked before training -----------------------------------------------------------------------


class Refused(Exception):
    """What huggingface_hub raises for an HTTP error: the response's status code on ``.response``."""

    def __init__(self, status: int):
        super().__init__(f"{status} Client Error")
        self.response = SimpleNamespace(status_code=status)


def whoami_says(role: str, orgs=(), scoped=()):
    """A stand-in for ``huggingface_hub.whoami``: user ``me`` with a token of ``role``."""
    answer = {"name": "me", "orgs": [{"name": n, "roleInOrg": r} for n, r in orgs],
              "auth": {"accessToken": {"role": role, "fineGrained": {"scoped": list(scoped), "global": []}}}}
    return lambda token=None: answer


@pytest.mark.parametrize("case, expected", [
    ("offline", "HF_HUB_OFFLINE is set, so nothing can be uploaded"),
    ("no token", "no Hub token found: set HF_TOKEN"),
    ("invalid repo id", "'me//model' is not a valid Hub repo id"),
    ("unreachable", "cannot reach the Hub at https://huggingface.co"),
    ("invalid token", "the Hub refused the token as invalid or expired"),
    ("Hub error", "the Hub did not say whom the token belongs to (Refused, HTTP 500)"),
    ("read-only token", "the token is read-only, so it cannot write me/model"),
    ("not your namespace", "the token belongs to 'me', who cannot create repos under 'someone-else'"),
    ("read-only in the org", "'me' has only read access to the organisation 'lab'"),
    ("fine-grained without write", "the fine-grained token has no 'repo.write' permission for 'me'"),
])
def test_a_push_that_cannot_work_stops_before_training(case, expected, images, tmp_path, monkeypatch):
    repo = {"invalid repo id": "me//model", "not your namespace": "someone-else/model",
            "read-only in the org": "lab/model"}.get(case, "me/model")
    if case != "offline":
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(hub, "can_reach", lambda *a, **k: case != "unreachable")
    if case == "no token":
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # nor a saved `hf auth login`

    def whoami(token=None):
        raise Refused(401 if case == "invalid token" else 500)

    role = {"read-only token": "read", "fine-grained without write": "fineGrained"}.get(case, "write")
    if case in ("invalid token", "Hub error"):
        monkeypatch.setattr(huggingface_hub, "whoami", whoami)
    else:
        monkeypatch.setattr(huggingface_hub, "whoami", whoami_says(role, orgs=[("lab", "read")], scoped=[
            {"entity": {"type": "user", "name": "me"}, "permissions": ["repo.content.read"]}]))
    found = problems("--train_data_dir", str(images), "--output_dir", str(tmp_path / "out"), "--push_to_hub",
                     "--hub_model_id", repo)
    assert len(found) == 1 and found[0].startswith(f"error: --push_to_hub: {expected}"), found
    assert "upload_pipeline" in found[0] and TOKEN not in found[0]


@pytest.mark.parametrize("role, scoped", [("write", []), ("fineGrained", [
    {"entity": {"type": "user", "name": "me"}, "permissions": ["repo.content.read", "repo.write"]}])])
def test_a_push_that_can_work_fills_in_the_repo_id(role, scoped, images, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "can_reach", lambda *a, **k: True)
    monkeypatch.setattr(huggingface_hub, "whoami", whoami_says(role, scoped=scoped))
    args, found = train_checks.unconditional(tu.build_parser(), ["--train_data_dir", str(images), "--output_dir",
                                                                 str(tmp_path / "my-ddpm"), "--push_to_hub"])
    assert found == [] and args.hub_model_id == "me/my-ddpm"


def test_the_script_stops_before_any_work_with_every_line_and_no_token(images, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "course_utils.train_unconditional", "--train_data_dir", str(images), "--output_dir",
         str(out), "--resolution", "0", "--learning_rate", "nan", "--train_batch_size", "-2", "--push_to_hub"],
        env=env, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and done.stdout == ""
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), done.stderr
    assert "HF_HUB_OFFLINE" in lines[-1] and "Traceback" not in done.stderr
    assert not out.exists() and TOKEN not in done.stderr and TOKEN.encode() not in all_text(tmp_path)


# ---- run_course ------------------------------------------------------------------------------------------------


@pytest.fixture
def notebook(tmp_path) -> Path:
    """A one-cell notebook in its own folder."""
    path = tmp_path / "nb" / "01_demo.ipynb"
    path.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    return path


@pytest.mark.parametrize("case, expected", [
    ("unknown profile", "--profile 'huge': not one of small, cpu, full"),
    ("bad COURSE_PROFILE", "COURSE_PROFILE='huge' is not a profile"),
    ("missing notebook", "notebook {tmp}/nb/99_nope.ipynb: no such file"),
    ("not a notebook", "notebook {tmp}/nb/notes.txt: not a .ipynb file"),
    ("broken notebook", "notebook {tmp}/nb/02_broken.ipynb: not a readable notebook"),
    ("out is a file", "--out {tmp}/file.txt: a file, not a folder"),
    ("out under a file", "--out {tmp}/file.txt/build: {tmp}/file.txt is a file"),
    ("out is the notebooks' folder", "--out {tmp}/nb: the notebooks' own folder"),
    ("zero timeout", "--timeout 0: must be a whole number of seconds, at least 1"),
    ("unknown option", "'--fast': not a flag of this script"),
])
def test_run_course_checks_its_command_line_first(case, expected, notebook, tmp_path, monkeypatch, capsys):
    tmp = tmp_path
    (tmp / "file.txt").write_text("")
    (tmp / "nb" / "notes.txt").write_text("")
    (tmp / "nb" / "02_broken.ipynb").write_text("{not json")
    monkeypatch.setenv("COURSE_PROFILE", "huge" if case == "bad COURSE_PROFILE" else "small")
    argv = {"unknown profile": ["--profile", "huge"],
            "missing notebook": [str(tmp / "nb" / "99_nope.ipynb")], "not a notebook": [str(tmp / "nb" / "notes.txt")],
            "broken notebook": [str(tmp / "nb" / "02_broken.ipynb")], "out is a file": ["--out", str(tmp / "file.txt")],
            "out under a file": ["--out", str(tmp / "file.txt" / "build")], "out is the notebooks' folder":
            ["--out", str(tmp / "nb")], "zero timeout": ["--timeout", "0"], "unknown option": ["--fast"]}.get(case, [])
    if "--out" not in argv:
        argv += ["--out", str(tmp / "build")]
    assert run_course.main([str(notebook), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + expected.format(tmp=tmp)), err
    assert not (tmp / "build").exists()


def test_run_course_reports_every_problem_at_once(notebook, tmp_path, capsys):
    assert run_course.main([str(tmp_path / "nope.ipynb"), "--profile", "huge", "--timeout", "soon", "--out",
                            str(notebook)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)


@pytest.mark.parametrize("flags, expected", [
    ([], "--reflow_pairs only means something with --pretrained_model_name_or_path"),
    (["--pretrained_model_name_or_path", "<digits-28>"], "is not a flow-matching pipeline"),
    (["--pretrained_model_name_or_path", "<digits-28-flow>", "--random_flip"], "--random_flip with --reflow_pairs"),
    (["--pretrained_model_name_or_path", "<digits-28-flow>", "--train_data_dir", "x"],
     "--train_data_dir with --reflow_pairs"),
    (["--pretrained_model_name_or_path", "<digits-28-flow>", "--prediction_type", "v_prediction"],
     "--reflow_pairs with --prediction_type v_prediction"),
])
def test_reflow_needs_a_flow_pipeline_and_no_images(flags, expected, tmp_path):
    flags = [str(pretrained.path(f[1:-1])) if f.startswith("<") else f for f in flags]
    if flags:  # the digit pipelines are 28 px
        flags += ["--resolution", "28"]
    found = problems("--reflow_pairs", "8", "--output_dir", str(tmp_path / "out"), *flags)
    assert len(found) == 1 and expected in found[0], found


def test_reflow_of_a_flow_pipeline_passes_the_checks(tmp_path):
    assert problems("--pretrained_model_name_or_path", str(pretrained.path("digits-28-flow")), "--reflow_pairs", "8",
                    "--resolution", "28", "--output_dir", str(tmp_path / "out")) == []
    assert problems("--train_data_dir", "x", "--reflow_steps", "4")[0].startswith(
        "error: --reflow_steps only means something with --reflow_pairs")


# ---- What the refactored checks guard beyond the cases above ----------------------------------------------------


def test_text_to_image_resumes_neither_a_finished_vae_stage_nor_a_checkpoint_of_another_script(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints-vae" / "checkpoint-1").mkdir(parents=True)
    (run / "checkpoints-vae" / "checkpoint-1" / "course_step.json").write_text('{"step": 1}')
    (run / "vae").mkdir()
    (run / "vae" / "config.json").write_text("{}")
    (run / "checkpoint-9").mkdir()

    def found(checkpoint: Path) -> list[str]:
        return train_checks.text_to_image(train_text_to_image.build_parser(), [
            "--output_dir", str(run), "--resume_from_checkpoint", str(checkpoint)])[1]

    assert found(run / "checkpoints-vae" / "checkpoint-1") == [
        f"error: --resume_from_checkpoint {run}/checkpoints-vae/checkpoint-1: the VAE stage has finished ({run}/vae); "
        "resuming it would retrain the VAE and lose stage 2: pass latest"]
    assert found(run / "checkpoint-9") == [
        f"error: --resume_from_checkpoint {run}/checkpoint-9: not a checkpoint of this script (want "
        f"{run}/checkpoints-vae/checkpoint-N or {run}/checkpoints-unet/checkpoint-N, or latest)"]


def test_controlnet_resumes_only_a_checkpoint_of_its_own_run(tmp_path):
    base = tmp_path / "base"
    (base / "unet").mkdir(parents=True)
    (base / "model_index.json").write_text("{}")
    (base / "unet" / "config.json").write_text("{}")
    for name in ("mine", "other"):
        (tmp_path / name / "checkpoints" / "checkpoint-5").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "checkpoint-5" / "course_step.json").write_text('{"step": 5}')

    def found(*flags: str) -> list[str]:
        return train_checks.controlnet(train_controlnet.build_parser(), [
            "--output_dir", str(tmp_path / "mine"), "--pretrained_model_name_or_path", str(base), *flags])[1]

    assert found("--resume_from_checkpoint", "latest") == []
    assert found("--resume_from_checkpoint", str(tmp_path / "mine" / "checkpoints" / "checkpoint-5")) == []
    assert found("--resume_from_checkpoint", str(tmp_path / "other" / "checkpoints" / "checkpoint-5"))[0].startswith(
        f"error: --resume_from_checkpoint {tmp_path}/other/checkpoints/checkpoint-5: belongs to another run")
    assert found()[0].startswith(f"error: --output_dir {tmp_path / 'mine'}: holds another run (checkpoints)")


def test_a_pipeline_script_wants_the_pipeline_s_files_as_files_and_its_folders_as_folders(tmp_path):
    base = tmp_path / "base"
    (base / "model_index.json").mkdir(parents=True)  # a folder where the file should be
    (base / "unet" / "config.json").mkdir(parents=True)
    found = train_checks.controlnet(train_controlnet.build_parser(), [
        "--output_dir", str(tmp_path / "out"), "--pretrained_model_name_or_path", str(base)])[1]
    assert found == [f"error: --pretrained_model_name_or_path {base}: not a Stable Diffusion pipeline folder (no "
                     "model_index.json and unet/config.json); pass one saved by course_utils.train_text_to_image"]
    tiny = pretrained.path("tiny-sd-butterflies")
    assert train_checks.sd3(train_sd3.build_parser(), [
        "--output_dir", str(tmp_path / "sd3"), "--pretrained_model_name_or_path", str(tiny)])[1] == []


@pytest.mark.parametrize("flag", ["--model_config_name_or_path", "--cache_dir"])
def test_overwrite_never_deletes_a_folder_the_run_reads(flag, images, tmp_path):
    run = tmp_path / "run"
    config = write_config(run / "tiny")
    value = str(config) if flag == "--model_config_name_or_path" else str(run / "tiny")
    found = problems("--train_data_dir", str(images), "--output_dir", str(run), "--resolution", "16",
                     "--overwrite_output_dir", flag, value)
    assert found == [f"error: --output_dir {run} --overwrite_output_dir would delete {run.resolve()}, which holds "
                     f"{flag} ({Path(value).resolve()}); choose a folder of its own"], found


def test_reflow_with_another_prediction_type_is_named_even_when_the_pipeline_cannot_be_read(tmp_path):
    found = problems("--reflow_pairs", "8", "--output_dir", str(tmp_path / "out"), "--pretrained_model_name_or_path",
                     str(tmp_path / "missing-pipeline"), "--prediction_type", "v_prediction")
    assert any(line.startswith("error: --reflow_pairs with --prediction_type v_prediction") for line in found), found
