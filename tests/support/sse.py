"""The one server-sent-events parser, for the tests and the bench's clients.

``sse_frame`` turns one event block (the lines between blank lines) into an
``SSEFrame``; ``sse_frames`` does it for a stream of lines (e.g. ``httpx``
``response.aiter_lines()``). The bench splits its byte stream into blocks
itself (cheaper than line by line for thousands of connections) and hands
each block's lines to ``sse_frame``.

Follows the WHATWG parsing rules that matter here: ``field: value`` with one
optional space, multi-line ``data`` joined by newlines, a blank line
dispatches, lines starting with ``:`` are comments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SSEFrame:
    """One dispatched SSE message (or a comment line, which has ``comment`` set)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


def sse_frame(lines: Iterable[str]) -> SSEFrame | None:
    """The frame one event block's ``lines`` make (comment lines are skipped).

    None for a block without fields (only comments). Unlike a browser it
    also returns blocks without data (a lone ``retry:`` hint), so tests can
    check them.
    """
    frame = SSEFrame()
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        frame.fields.append((name, value))
        if name == "data":
            data.append(value)
        elif name == "event":
            frame.event = value
        elif name == "id":
            frame.id = value
        elif name == "retry" and value.isdigit():
            frame.retry = int(value)
    if not frame.fields:
        return None
    frame.data = "\n".join(data)
    return frame


async def sse_frames(lines: AsyncIterator[str], comments: bool = False) -> AsyncIterator[SSEFrame]:
    """Parse an SSE stream of lines into frames, as they complete.

    Comment lines (``:`` ...) are yielded, as frames with ``comment`` set,
    only if ``comments``.
    """
    block: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if line == "":
            frame = sse_frame(block)
            block = []
            if frame is not None:
                yield frame
        elif line.startswith(":"):
            if comments:
                yield SSEFrame(event="", comment=line[1:].lstrip(" "))
        else:
            block.append(line)


async def sse_next(frames: AsyncIterator[SSEFrame], timeout: float = 10.0) -> SSEFrame:
    """The next frame from ``sse_frames(...)``, or ``TimeoutError``."""
    return await asyncio.wait_for(anext(frames), timeout)
