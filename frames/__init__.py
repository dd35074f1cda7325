"""Frame-level visual-text classification (issue 20, part 1): a class-folder image dataset
sampled from the single-class videos, a 2D backbone projected into the frozen text encoder's
space, CLIP losses with cross-entropy or Jensen-Shannon targets, and ``predict-frames``."""
