"""A training run's bookkeeping, for both training scripts: checkpoints (whole or not at all, with a limit), the
checkpoint to resume from, the saved pipeline, and ``training_log.json``."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from .files import atomic_folder, forget_source, write_text_atomic

CHECKPOINT_PREFIX = "checkpoint-"
LOG_FILE = "training_log.json"


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (temporary folders of an interrupted save excluded)."""
    found = [p for p in Path(folder).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resume_path(spec: str | None, folder: Path) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint spec`` names: for ``latest`` the newest in ``folder`` (None if
    there is none), otherwise the path itself."""
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(folder)
        return found[-1] if found else None
    return Path(spec)


def run_marks(folder: Path) -> list[str]:
    """What in ``folder`` shows that a run was there: its pipeline (model_index.json) and checkpoints."""
    found = ["model_index.json"] if (folder / "model_index.json").is_file() else []
    checkpoints = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()]
    if checkpoints:
        found.append(f"{len(checkpoints)} checkpoint folder(s)")
    return found


def save_checkpoint(accelerator: Accelerator, folder: Path, step: int, total_limit: int | None,
                    about: dict | None = None) -> Path:
    """Save the whole training state to ``folder/checkpoint-<step>``: written under a temporary name, then
    renamed; the oldest beyond ``total_limit`` are removed.

    ``about`` (e.g. the resolution and UNet config) goes to ``course_model.json``, so a resume can check it fits."""
    final = folder / f"{CHECKPOINT_PREFIX}{step}"
    tmp = folder / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its own random state into the same folder
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "course_step.json").write_text(json.dumps({"step": step}))
        if about is not None:
            (tmp / "course_model.json").write_text(json.dumps(about, default=list))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if total_limit is not None:
            for old in list_checkpoints(folder)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def end_step(args, accelerator: Accelerator, optimizer, schedule, log: TrainingLog, folder: Path, step: int,
             total: int, running: list[float], bar) -> None:
    """After a backward pass (``train_text_to_image``, ``train_sd3``): the optimizer's and the schedule's step; the
    running mean loss logged (at step 1, every 50 steps and the last); a checkpoint into ``folder`` every
    ``--checkpointing_steps`` (not at the end: the script saves its model)."""
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    bar.update(1)
    if step == 1 or step % 50 == 0 or step == total:
        log.add(step, float(np.mean(running)))
        bar.set_postfix(loss=f"{np.mean(running):.5f}")
        running.clear()
    if step % args.checkpointing_steps == 0 and step < total:
        log.save()
        save_checkpoint(accelerator, folder, step, args.checkpoints_total_limit, about={"seconds": log.seconds()})


def finish_run(args, accelerator: Accelerator, log: TrainingLog, checkpoints: Path, save, **facts) -> None:
    """The end of a run (``train_controlnet``, ``train_sd3``): the log's facts, the model saved by the main process
    (``save()``), then the log (a run is done once its model is saved) and the checkpoints removed."""
    log.finish(args, **facts)
    if accelerator.is_main_process:
        save()
    log.save()
    if accelerator.is_main_process:
        shutil.rmtree(checkpoints, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, checkpoint: Path) -> tuple[int, dict]:
    """Load a checkpoint into the prepared objects; the step it was taken at and its ``course_model.json``."""
    accelerator.load_state(str(checkpoint))
    step = json.loads((checkpoint / "course_step.json").read_text())["step"]
    about = checkpoint / "course_model.json"
    return step, (json.loads(about.read_text()) if about.is_file() else {})


def save_pipeline_into(pipeline, folder: Path) -> None:
    """Save the pipeline into ``folder`` (diffusers' layout, beside checkpoints and logs) without ever leaving a
    half-written one: saved whole into a temporary folder, each component folder then renamed into place in one
    step, ``model_index.json`` last."""
    staging = folder / ".pipeline-staging"
    with atomic_folder(staging, replace=True) as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        forget_source(tmp)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == "model_index.json"):
        target = folder / entry.name
        if entry.is_dir() and target.exists():
            old = folder / f".{entry.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old)
        else:
            os.replace(entry, target)
    shutil.rmtree(staging)


class TrainingLog:
    """``training_log.json`` of a run: each stage's losses ``[[step, loss], ...]`` and seconds (a resumed run's
    time before the interruption included) and, once finished, the flags and the machine. The main process
    writes it, whole or not at all."""

    def __init__(self, folder: Path, accelerator: Accelerator) -> None:
        self.file, self.accelerator = Path(folder) / LOG_FILE, accelerator
        self.data = json.loads(self.file.read_text()) if self.file.is_file() else {"losses": {}, "seconds": {}}
        self.stage, self.clock = None, time.perf_counter()

    def start(self, stage: str, step: int = 0, seconds: float = 0.0) -> None:
        """Begin (or resume at ``step``, after ``seconds`` of training) a stage: later losses are dropped."""
        self.stage, self.clock = stage, time.perf_counter() - seconds
        self.data["losses"][stage] = [row for row in self.data["losses"].get(stage, []) if row[0] <= step]

    def seconds(self) -> float:
        """The stage's training time so far, in seconds."""
        return round(time.perf_counter() - self.clock, 1)

    def add(self, step: int, loss: float) -> None:
        """Record the loss at ``step``."""
        self.data["losses"][self.stage].append([step, round(float(loss), 5)])

    def finish(self, args, **facts) -> None:
        """Record the flags, the machine and ``facts`` (e.g. parameter counts) of a finished run."""
        cuda = torch.cuda.is_available()
        threads = torch.get_num_threads()
        device = torch.cuda.get_device_name() if cuda else f"CPU ({threads} thread{'s' * (threads > 1)})"
        flags = {k: str(v) for k, v in vars(args).items() if k not in ("given_flags", "parse_problems")}
        self.data.update(args=flags, device=device, torch=torch.__version__, date=str(date.today()),
                         processes=self.accelerator.num_processes, **facts)

    def save(self) -> None:
        """Write the log (the main process only), with the stage's seconds so far."""
        self.data["seconds"][self.stage] = self.seconds()
        if self.accelerator.is_main_process:
            write_text_atomic(self.file, json.dumps(self.data, indent=1))
