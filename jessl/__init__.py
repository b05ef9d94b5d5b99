"""jessl: joint-embedding self-supervised learning, fast on one machine."""

__version__ = "0.1.0"
