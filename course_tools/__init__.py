"""The course's machinery, beside the package the chapters import (``course_utils``): running every chapter
(``run_course``, what ``make course`` runs), slide decks (``slides``), the docs' generated tables
(``readme_tables``), and retraining the shipped pipelines and writing their model cards (``pretrained``).

Not installed and never imported by a chapter or by ``course_utils``: run it from a clone of the repository,
``python -m course_tools.<module>`` (the Makefile's targets do).
"""
