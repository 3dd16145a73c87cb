"""``python -m course_utils.pretrained --retrain NAME``: see ``course_utils.pretrained``."""

import sys

from . import main

main(sys.argv[1:])
