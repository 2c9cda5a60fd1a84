"""Training: the engine below the CLI and the seed document's two wrappers.

``module.py`` (LightningModule + DataModule), ``callbacks.py``, ``trainer.py``, ``options.py`` (``TrainOptions``),
``run.py`` (``fit(cfg, options)``), ``rundir.py`` (one run per directory); ``main.py`` (the seed's ``train()`` and
``python -m roofmapnet.train.main``) and ``preprocess_rid2.py`` (the seed's preprocessing API).

Nothing is imported here, so that ``python -m roofmapnet.train.preprocess_rid2`` stays light.
"""
