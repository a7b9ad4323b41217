"""speechkit: Deep Speech 2 recognition and a conditional WaveNet vocoder on one TensorFlow front end."""

__version__ = "0.1.0"
