"""The one error for an unreadable video source.

Every unreadable input raises :class:`VideoError` naming the source and a specific reason (no such
file, permission denied, truncated or corrupt, unsupported codec, too short, ...), never FFmpeg's
generic message alone.
"""

from __future__ import annotations


class VideoError(Exception):
    """The one error for an unreadable video source; ``str()`` is ``"<source>: <reason>"``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


def _av_reason(e: BaseException) -> str:
    """An FFmpeg/OS error's own text, lower-cased at the start, to end a :class:`VideoError` reason."""
    text = (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip()
    return text[:1].lower() + text[1:]
