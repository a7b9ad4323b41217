"""Text to speech: presets (``config``), text normalisation and splitting (``text``), the FastSpeech-style
acoustic model (``model``), training data (``data``), training (``train``), Griffin-Lim mel inversion
(``griffinlim``), synthesis with Griffin-Lim or a WaveNet (``synthesis``) and evaluation (``evaluate``).
Character durations come from ``speechkit.data.durations``; the SavedModel from ``speechkit.export.tts``."""
