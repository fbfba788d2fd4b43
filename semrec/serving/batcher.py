"""Micro-batching: concurrent requests wait for one shared model call instead of each running its own.

Handlers `await submit(query)`; one worker thread takes everything queued (up to `max_batch`), runs the engine
once, and hands each caller its row. While a batch runs, the next one fills, so under load the batch size grows
with the request rate and beam search or scoring runs on many users at once; an idle server answers a lone
request immediately (no fixed wait).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


class MicroBatcher:
    """Runs `fn(list_of_items) -> list_of_results` on batches drawn from concurrent `submit` calls."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch: int = 64, name: str = "semrec-batcher"):
        self.fn, self.max_batch = fn, max(1, int(max_batch))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((item, fut, loop))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    @staticmethod
    def _deliver(fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
        if fut.done():  # the client went away
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self.batches += 1
            self.items += len(batch)
            try:
                results, error = self.fn([b[0] for b in batch]), None
            except BaseException as e:  # noqa: BLE001 - handed to every waiting caller
                results, error = [None] * len(batch), e
            for (_, fut, loop), res in zip(batch, results):
                loop.call_soon_threadsafe(self._deliver, fut, res, error)


class InlineBatcher:
    """`MicroBatcher` without a thread: the model runs on the event loop's own thread.

    A second thread costs more than it gives on a busy CPU: every `put` and every syscall of the event loop hands
    the GIL to the model thread and waits up to a switch interval to get it back (measured: the HTTP side's CPU
    per request doubled). Here the first `submit` starts a drain task; it yields to the loop until no more
    requests join (those read from the sockets in the same pass), runs `fn` on all of them (at most `max_batch`),
    answers them, and repeats while any are waiting. While `fn` runs, new requests wait in the socket buffers and
    form the next batch.
    """

    MAX_SPINS = 8  # loop passes a batch may wait for more requests (each pass costs microseconds)

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch: int = 64):
        self.fn, self.max_batch = fn, max(1, int(max_batch))
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await fut

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _drain(self) -> None:
        try:
            while self._pending:
                seen, spins = -1, 0
                while len(self._pending) != seen and len(self._pending) < self.max_batch and spins < self.MAX_SPINS:
                    seen, spins = len(self._pending), spins + 1
                    await asyncio.sleep(0)
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                batch = [(item, fut) for item, fut in batch if not fut.done()]  # callers that went away
                if not batch:
                    continue
                self.batches += 1
                self.items += len(batch)
                try:
                    results, error = self.fn([b[0] for b in batch]), None
                except Exception as e:  # noqa: BLE001 - handed to every waiting caller
                    results, error = [None] * len(batch), e
                for (_, fut), res in zip(batch, results):
                    if not fut.done():
                        fut.set_exception(error) if error is not None else fut.set_result(res)
        finally:
            self._task = None
