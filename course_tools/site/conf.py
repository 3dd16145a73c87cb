"""The Sphinx settings of the course's website (``python -m course_tools.site`` writes a conf.py that calls these).

Everything a page loads is served from the site's own folder: MathJax 2.7.9 from ``slides/node_modules`` (the
copy ``make slides`` pins), the theme's fonts and icons from the theme's package; no widget script (myst-nb's
default would load require.js and the widget manager from a CDN): the builder draws each widget's last state as
static HTML instead (a finished tqdm bar, chapter 2's explorer as it was left).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
MATHJAX = "mathjax/MathJax.js?config=TeX-AMS_CHTML"  # under _static/


def settings(context: dict) -> dict:
    """The conf.py values for one build; ``context`` is what the builder staged (site.json)."""
    repository = context["repository"]

    def page_context(app, pagename: str, templatename: str, ctx: dict, doctree) -> None:
        """Give each page its language twin (for the switch) and the run its outputs come from (the footer)."""
        twin = context["twins"].get(pagename)
        if twin is not None:
            ctx["course_twin"] = app.builder.get_relative_uri(pagename, twin)
            ctx["course_twin_label"] = "English" if context["languages"].get(pagename) == "zh" else "中文"
        ctx["course_run"] = context["runs"].get(pagename)
        language = context["languages"].get(pagename)
        if language:  # course.js shows this language's part of the sidebar
            ctx["metatags"] = ctx.get("metatags", "") + f'\n<meta name="course-language" content="{language}">'


    def setup(app) -> None:
        app.connect("html-page-context", page_context)

    return {
        "project": "Diffusion models, from scratch to diffusers",
        "author": "the course's authors",
        "copyright": "the course's authors",
        "extensions": ["myst_nb", "sphinx.ext.mathjax"],
        "root_doc": "index",
        "language": "en",
        "exclude_patterns": ["_build", "site.json", "conf.py"],
        "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence", "html_image"],
        "myst_heading_anchors": 4,
        "nb_execution_mode": "off",  # the notebooks come executed (make course)
        "nb_ipywidgets_js": {},  # the widget manager lives on a CDN: widgets are left out
        "nb_merge_streams": True,
        "mathjax_path": MATHJAX,
        "myst_update_mathjax": False,  # its settings are MathJax 3's
        "mathjax2_config": {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                                        "processEscapes": True}},
        "html_theme": "sphinx_book_theme",
        "html_title": "Diffusion models, from scratch to diffusers",
        "html_static_path": ["_static"],
        "html_css_files": ["course.css"],
        "html_js_files": ["course.js"],
        "html_favicon": str(HERE / "static" / "favicon.svg"),
        "templates_path": [str(HERE / "templates")],
        "html_last_updated_fmt": None,
        "html_context": {"default_mode": "light"},
        "html_copy_source": True,
        "html_show_sourcelink": False,
        "html_theme_options": {
            "repository_url": repository,
            "repository_branch": "main",
            "path_to_docs": "",
            "use_repository_button": True,
            "use_download_button": True,
            "use_fullscreen_button": False,
            "launch_buttons": {"colab_url": "https://colab.research.google.com"},
            "home_page_in_toc": True,
            "show_navbar_depth": 1,
            "article_header_end": ["course-language.html", "article-header-buttons.html"],
            "footer_content_items": ["course-run.html"],
        },
        "suppress_warnings": ["mystnb.unknown_mime_type", "myst.header"],
        "setup": setup,
    }
