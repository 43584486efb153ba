"""Data: dataset readers and the one stream builder (numpy only, usable on a device)."""

from edgerf.data.stream import Stream, concat_samples

__all__ = ["Stream", "concat_samples"]
