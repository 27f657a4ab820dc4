"""plipbot: PLIP zero-shot label suggestions and similar pathology cases for chat forums."""

__version__ = "0.1.0"
