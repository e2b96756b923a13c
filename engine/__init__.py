"""OPD diagnostic engine: per-token alignment of distillation signals with the ideal direction."""

__version__ = "0.1.0"
