"""Chapter 2's timestep explorer (course_utils.viz.explorer): a moved control redraws the picture."""

import matplotlib.pyplot as plt
import pytest

from course_utils.viz import explorer

widgets = pytest.importorskip("ipywidgets")


def draw(t: int = 0, colour: str = "red") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.axvline(t, color=colour)
    ax.set_xlim(0, 999)
    return fig


def test_the_explorer_shows_the_controls_and_the_picture():
    slider, picker = widgets.IntSlider(value=500, min=0, max=999), widgets.Dropdown(options=["red", "blue"])
    box = explorer(draw, t=slider, colour=picker)
    controls, view = box.children
    assert list(controls.children) == [slider, picker]
    assert view.format == "png" and view.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_moving_a_control_redraws_the_picture_for_the_new_value():
    slider, picker = widgets.IntSlider(value=500, min=0, max=999), widgets.Dropdown(options=["red", "blue"])
    view = explorer(draw, t=slider, colour=picker).children[1]
    before = view.value
    slider.value = 800
    after_slider = view.value
    assert after_slider != before
    picker.value = "blue"
    assert view.value not in (before, after_slider)
    slider.value = 500
    picker.value = "red"
    assert view.value == before, "the same values draw the same picture"
