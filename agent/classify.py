"""Which stream a runbook's output line belongs to (DESIGN.md "Jobs")."""

from __future__ import annotations

from outpost.contract import StreamType

PREFIXES: tuple[tuple[str, StreamType], ...] = (
    ("ERROR:", StreamType.ERROR),
    ("WARNING:", StreamType.WARNING),
    ("VERBOSE:", StreamType.VERBOSE),
    ("DEBUG:", StreamType.DEBUG),
    ("PROGRESS:", StreamType.PROGRESS),
)
MAX_RECORD_CHARS = 32 * 1024  # longer lines are split, never truncated


def classify_stdout(line: str) -> tuple[StreamType, str]:
    """`ERROR: x` goes to Error as `x`; unprefixed stdout is Output."""
    for prefix, stream in PREFIXES:
        if line.startswith(prefix):
            return stream, line[len(prefix) :].lstrip(" ")
    return StreamType.OUTPUT, line


def decode_line(raw: bytes) -> str:
    return raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")


def split_long(text: str) -> list[str]:
    if len(text) <= MAX_RECORD_CHARS:
        return [text]
    return [text[i : i + MAX_RECORD_CHARS] for i in range(0, len(text), MAX_RECORD_CHARS)]
