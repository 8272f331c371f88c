"""Errors a caller can act on; the CLI and HTTP layer map them to messages and status codes."""


class CodecError(Exception):
    """Base class: a clear, user-facing message; never a crash."""


class BitstreamError(CodecError):
    """Truncated, corrupted, foreign or unsupported .lic data."""


class ImageError(CodecError):
    """The input is not an image we can read."""


class LimitError(CodecError):
    """The input is larger than a configured limit (bytes, pixels, tiles)."""


class ModelError(CodecError):
    """Unknown model, or a model package that does not match the bitstream."""


class Stopped(CodecError):
    """Work stopped between two steps because its caller no longer wants it (deadline passed, cancelled)."""
