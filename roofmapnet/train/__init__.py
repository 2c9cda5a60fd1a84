"""Training: the Lightning module and datamodule (``main.py``) and the seed's ``preprocess_rid2`` API.

Nothing is imported here, so that ``python -m roofmapnet.train.preprocess_rid2`` stays light.
"""
