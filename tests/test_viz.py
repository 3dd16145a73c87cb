import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import make_grid, plot_losses, plot_schedules, show_images


def test_show_images_maps_range_to_pixels():
    x = torch.full((2, 3, 8, 8), -1.0)
    x[1] = 1.0
    grid = show_images(x, nrow=2, min_width=1)
    arr = np.asarray(grid)
    assert grid.size == (2 * 8 + 3 * 2, 8 + 2 * 2)  # torchvision's 2-pixel padding
    assert (arr[2:10, 2:10] == 0).all() and (arr[2:10, 12:20] == 255).all()


def test_show_images_clips_and_takes_other_ranges():
    x = torch.tensor([[[[2.0, -3.0]]]])  # one image: torchvision adds no padding
    arr = np.asarray(show_images(x, min_width=1))
    assert arr.shape == (1, 2) and arr[0, 0] == 255 and arr[0, 1] == 0
    half = np.asarray(show_images(torch.full((1, 1, 4, 4), 0.5), value_range=(0, 1), min_width=1))
    assert (half == 128).all()


def test_show_images_enlarges_small_grids_by_whole_factors():
    grid = show_images(torch.zeros(8, 1, 28, 28))  # 8*30+2 = 242 px wide
    assert grid.width >= 512 and grid.width % 242 == 0


def test_show_images_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"got shape \(28, 28\)"):
        show_images(torch.zeros(28, 28))


def test_make_grid_lays_out_rows_and_pads():
    images = [Image.new("RGB", (10, 10), c) for c in ("red", "green", "blue")]
    assert make_grid(images).size == (30, 10)
    assert make_grid(images, cols=2).size == (20, 20)
    assert make_grid(images, size=5).size == (15, 5)
    with pytest.raises(ValueError):
        make_grid([])


def test_plot_losses_has_linear_and_log_axes():
    fig = plot_losses({"a": [1.0, 0.5, 0.25], "b": [2.0, 1.0, 0.1]})
    linear, log = fig.axes
    assert linear.get_yscale() == "linear" and log.get_yscale() == "log"
    assert len(log.lines) == 2


def test_plot_schedules_draws_each_schedule():
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    fig = plot_schedules({"linear": abar, "other": abar**2})
    assert len(fig.axes) == 3 and all(len(ax.lines) == 2 for ax in fig.axes)
