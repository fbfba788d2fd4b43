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
