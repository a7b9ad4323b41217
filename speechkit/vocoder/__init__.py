"""Conditional WaveNet vocoder: model (``wavenet``), training data (``data``), training (``train``),
cached generation (``generation``, with the numba twin in ``fast``) and evaluation (``evaluate``)."""
