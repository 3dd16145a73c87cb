"""Training a shipped pipeline again and writing its model card: ``python -m course_tools.pretrained --retrain NAME``
(``retraining``), ``--card NAME`` (``cards``, filled in from ``templates/``); ``control_card`` for the shipped
ControlNet's and depth U-Net's cards. The pipelines themselves, and how each is made: ``course_utils.pretrained``.
"""
