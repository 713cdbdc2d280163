"""The progress line on stderr: requests sent/done, errors, elapsed; redrawn in place on a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TextIO


class Progress:
    """Counters the driver bumps, and a task that redraws them. On a terminal the line is rewritten every
    quarter second; into a file or pipe a plain line every few seconds, so logs stay readable."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.sent = 0
        self.done = 0
        self.errors = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        planned = f"/{self.total}" if self.total else ""  # closed-loop runs have no plan
        return (f"[{self.label}] sent {self.sent}{planned}  done {self.done}  errors {self.errors}  "
                f"in flight {self.sent - self.done}  elapsed {elapsed:5.1f}s")

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._redraw())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._write(final=True)

    async def _redraw(self) -> None:
        interval = 0.25 if self._tty else 5.0
        while True:
            await asyncio.sleep(interval)
            self._write(final=False)

    def _write(self, *, final: bool) -> None:
        if self._tty:
            # \r and erase-to-end-of-line: the line is redrawn in place; the last one is kept.
            self._stream.write("\r" + self.line() + "\x1b[K" + ("\n" if final else ""))
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()
