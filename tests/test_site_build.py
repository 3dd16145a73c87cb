"""The website builder's pieces that need no Sphinx: links mended for the site, remote files found."""

from pathlib import Path

from course_tools.site.build import remote_resources, rewrite_links

REPO = "https://github.com/owner/course"
SITE_FILES = {"docs/install.md", "notebooks/01_x.ipynb", "images/pipeline.png"}


def test_links_the_site_has_stay_and_the_rest_go_to_the_repository():
    text = ("[install](install.md#notebook-platforms) [ch1](../notebooks/01_x.ipynb) [cfg](../course_utils/config.py) "
            "[readme](../README.md) [readme part](../README.md#two-commands) [web](https://example.org/a.md) "
            "[here](#top) ![d](../images/pipeline.png)")
    out = rewrite_links(text, "docs/install2.md", SITE_FILES, REPO)
    assert "[install](install.md#notebook-platforms)" in out and "[ch1](../notebooks/01_x.ipynb)" in out
    assert f"[cfg]({REPO}/blob/main/course_utils/config.py)" in out
    assert "[readme](../index.md)" in out, "the README's link goes to the landing page"
    assert f"[readme part]({REPO}/blob/main/README.md#two-commands)" in out, "an anchor in the README stays on GitHub"
    assert "[web](https://example.org/a.md)" in out and "[here](#top)" in out and "](../images/pipeline.png)" in out
    assert f"[folder]({REPO}/tree/main/notebooks/zh)" in rewrite_links("[folder](zh/)", "notebooks/01_x.ipynb",
                                                                       SITE_FILES, REPO)


def test_a_badge_becomes_a_text_link():
    badge = "[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.example/nb)"
    assert rewrite_links(badge, "notebooks/01_x.ipynb", SITE_FILES, REPO) == "[Open in Colab](https://colab.example/nb)"


def test_remote_scripts_styles_and_fonts_are_found_links_to_read_are_not(tmp_path: Path):
    (tmp_path / "a.html").write_text(
        '<link rel="canonical" href="https://example.org/a.html"><a href="https://example.org">read</a>'
        '<script src="_static/local.js"></script><img src="pictures/x.png">', encoding="utf-8")
    assert remote_resources(tmp_path) == []
    (tmp_path / "b.html").write_text('<script src="https://cdn.example/mathjax.js"></script>'
                                     '<link rel="stylesheet" href="//fonts.example/css">', encoding="utf-8")
    (tmp_path / "c.css").write_text("@font-face { src: url('https://fonts.example/f.woff2'); }", encoding="utf-8")
    found = remote_resources(tmp_path)
    assert found == ["b.html: https://cdn.example/mathjax.js", "b.html: //fonts.example/css",
                     "c.css: a url() or @import from another host"]


def test_a_widget_is_drawn_from_its_saved_state():
    from course_tools.site.build import static_widget

    state = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_label", "IPY_MODEL_progress"]}},
        "label": {"model_name": "HTMLModel", "state": {"value": "epoch 1/2:\u2007100%"}},
        "progress": {"model_name": "FloatProgressModel", "state": {"value": 45.0, "max": 45.0}},
        "picture": {"model_name": "ImageModel", "state": {"format": "png"},
                    "buffers": [{"path": ["value"], "encoding": "base64", "data": "iVBORw0KGgo="}]},
        "layout": {"model_name": "LayoutModel", "state": {}},
    }
    view = "application/vnd.jupyter.widget-view+json"
    bar = static_widget({"output_type": "display_data", "data": {view: {"model_id": "bar"}, "text/plain": "0%"}},
                        state)
    html = bar["data"]["text/html"]
    assert "epoch 1/2:\u2007100%" in html and '<progress value="45.0" max="45.0">' in html and view not in bar["data"]
    picture = static_widget({"output_type": "display_data", "data": {view: {"model_id": "picture"}}}, state)
    assert '<img src="data:image/png;base64,iVBORw0KGgo="' in picture["data"]["text/html"]
    assert static_widget({"output_type": "display_data", "data": {view: {"model_id": "layout"}}}, state) is None
    assert static_widget({"output_type": "display_data", "data": {view: {"model_id": "gone"}}}, state) is None
    text = {"output_type": "stream", "name": "stdout", "text": "hi\n"}
    assert static_widget(text, state) == text
