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
