"""Music: chord labels and recognition, objective scores for generated music, and their evaluation."""

from speechkit.music.chords import (LABELS, QUALITIES, ROOTS, chance_accuracy, chord_label, chord_pitch_classes,
                                    chord_profile, chord_templates, chromagram, parse_chord, recognize_chord,
                                    same_chord)
from speechkit.music.scores import (check_recognizer, flatness, histogram_distance, is_music, pitch_class_histogram,
                                    score_clips)

__all__ = [
    "LABELS", "QUALITIES", "ROOTS", "chance_accuracy", "chord_label", "chord_pitch_classes", "chord_profile",
    "chord_templates", "chromagram", "parse_chord", "recognize_chord", "same_chord",
    "check_recognizer", "flatness", "histogram_distance", "is_music", "pitch_class_histogram", "score_clips",
]
