"""Text to speech: text normalisation, the FastSpeech-style acoustic model, its training, and synthesis."""
