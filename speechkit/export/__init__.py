"""SavedModel and TFLite export: ASR (``asr``), vocoder (``vocoder``) and parity checks (``check``).

Exported models need only TensorFlow: the front end, the network and greedy decoding (ASR) or the
cached generation loop (vocoder) all run inside the saved graphs.
"""

from speechkit.export.asr import (ASRServingModule, ExportedRecognizer, ExportError, TFLiteRecognizer,
                                  convert_asr_tflite, export_asr, greedy_transcripts, load_exported_asr)
from speechkit.export.vocoder import ExportedVocoder, VocoderServingModule, export_vocoder, load_exported_vocoder

__all__ = [
    "ExportError",
    "ASRServingModule",
    "ExportedRecognizer",
    "TFLiteRecognizer",
    "convert_asr_tflite",
    "export_asr",
    "greedy_transcripts",
    "load_exported_asr",
    "VocoderServingModule",
    "ExportedVocoder",
    "export_vocoder",
    "load_exported_vocoder",
]
