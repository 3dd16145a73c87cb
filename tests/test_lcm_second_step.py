"""benchmarks/lcm_second_step.py: its 'teacher's finish' is the teacher's own DDIM path, and bad flags are refused
together before any model is loaded."""

import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from course_utils import pretrained
from course_utils.sampling import sample_ddpm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lcm_second_step  # noqa: E402


def test_the_teachers_finish_from_999_is_its_50_step_ddim_sample():
    teacher = pretrained.load("digits-28")
    noise = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ddim = DDIMScheduler.from_config(teacher.scheduler.config, timestep_spacing="trailing")
    finished = lcm_second_step.teacher_finish(teacher.unet, teacher.scheduler.config, noise, 999)
    assert torch.allclose(finished, sample_ddpm(teacher.unet, ddim, 1, 50, noise=noise), atol=1e-5)


def test_bad_flags_are_named_together_before_any_work(capsys):
    with pytest.raises(SystemExit) as stop:
        lcm_second_step.main(["--n", "1", "--renoise", "500", "999", "--seed", "x"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
    for flag in ("--n 1", "--renoise [500, 999]", "--seed 'x'"):
        assert any(flag in line for line in lines), (flag, lines)
