"""oi-pipe: rebuild Open Images from its URL lists and prepare it for learning from noisy labels."""

__version__ = "0.1.0"
