"""The `full` profile sized for a free Colab T4 (benchmarks/full_profile_cost.py): the FLOP count agrees with the one
GPU measurement the course has, and every chapter's estimate stays within a quarter hour."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import full_profile_cost as cost  # noqa: E402


def test_the_count_agrees_with_train_speed_s_measured_flops():
    record = json.loads(next((ROOT / "benchmarks" / "results").glob("train_speed-cuda-full-*.json")).read_text())
    counted = 3 * cost.forward_gflop(cost._published)  # a training image: a forward and a backward
    assert abs(counted / record["gflop_per_image"] - 1) < 0.01, (counted, record["gflop_per_image"])


def test_every_chapter_s_full_profile_fits_a_free_t4_in_a_quarter_hour():
    rows = cost.cost("full")["chapters"]
    assert len(rows) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))), "every chapter is counted"
    over = {name: row["minutes"]["T4"] for name, row in rows.items() if row["minutes"]["T4"] > 15}
    assert not over, f"full profile over 15 estimated T4-minutes: {over}; shrink its settings in config.py"
    assert rows["05_scaling_up_accelerate"]["gflop_fp16"] > 0, "chapter 5's script runs in fp16 (a T4 has no bf16)"
