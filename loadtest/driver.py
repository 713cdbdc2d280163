"""The open-loop driver: sends each planned request at its scheduled time, whatever earlier ones are doing.

Every request is its own task, started when its time comes; a slow answer holds up nothing but itself.
If the load generator itself falls behind (a busy core), requests go out late, but their latency still
counts from the scheduled time, and the lag is recorded so a report can show the generator kept up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from loadtest.client import RequestResult, send_request
from loadtest.progress import Progress
from loadtest.schedule import PlannedRequest


def client_session(limit: int = 0) -> aiohttp.ClientSession:
    # limit=0: no connection cap, so the client never queues requests itself (that would be coordinated
    # omission again, hidden in the connection pool). Keep-alive connections are reused.
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                 auto_decompress=False)


async def drive_open_loop(session: aiohttp.ClientSession, base_url: str, alias: str,
                          schedule: Sequence[PlannedRequest], *, start_at: float, request_timeout_s: float,
                          hard_timeout_s: float, progress: Progress, api_key: str | None = None
                          ) -> list[RequestResult]:
    """Run the schedule from loop time `start_at`. Returns one result per planned request, in plan order.

    Stops by itself: after `hard_timeout_s` nothing more is sent and whatever is still running is cancelled;
    those requests are errors (`hard timeout`, or `not sent` for ones never sent).
    """
    loop = asyncio.get_running_loop()
    hard_deadline = start_at + hard_timeout_s
    tasks: dict[int, asyncio.Task[RequestResult]] = {}

    def count(task: asyncio.Task[RequestResult]) -> None:
        progress.done += 1
        if task.cancelled() or task.exception() is not None or not task.result().ok:
            progress.errors += 1

    for req in schedule:
        due = start_at + req.at_s
        if due >= hard_deadline:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send_request(session, base_url, alias, req, due, request_timeout_s, api_key))
        task.add_done_callback(count)
        tasks[req.index] = task
        progress.sent += 1

    if tasks:
        _, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, hard_deadline - loop.time()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    results: list[RequestResult] = []
    for req in schedule:
        task_or_none = tasks.get(req.index)
        if task_or_none is None:
            error = "not sent"
        elif task_or_none.cancelled():
            error = "hard timeout"
        elif (exc := task_or_none.exception()) is not None:
            error = f"client failure: {exc!r}"  # send_request catches what the network can throw; a bug if here
        else:
            results.append(task_or_none.result())
            continue
        results.append(RequestResult(index=req.index, door=req.door, stream=req.stream, scheduled_s=req.at_s,
                                     error=error, input_tokens=req.prompt_tokens))
    return results
