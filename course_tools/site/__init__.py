"""The course as a static website (Sphinx + myst-nb): ``python -m course_tools.site``, or ``make site``."""
