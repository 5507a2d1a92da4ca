"""Group commit: concurrent calls of one write share a statement, each caller keeping its own outcome.

A ``GroupCommitter`` runs a write for many callers of one event loop. A call arriving while fewer than ``flushes``
writes are under way and no call waits goes straight through on its own (``one``): a lone caller pays nothing more
than before. Otherwise it waits in a queue; each flush takes up to ``max_calls`` waiting calls and writes them
together (``many``: one statement, one round trip, one commit), then takes the next ones while some wait. ``many``
answers each call on its own: its result, or its own error (a refused event fails its caller only). An error
raised by ``many`` itself (no connection, the connection lost under the statement) is every call's of that group,
each raised to its caller as ``one`` would have raised it, so the caller's retry rule (``LuminarDB._write``) decides
for each the same way as for a lone call.

Flushes run as tasks of their own: a caller cancelled while it waits leaves the queue (or, when its group is under
way, only stops waiting), and the others' answers never depend on it.

Example::

    committer = GroupCommitter(repo.store_prepared, repo.store_group, max_calls=64, flushes=4)
    event_id = await committer.submit(CrimeEventRepository.prepare(event, miner_uid=7))
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommitter"]

I = TypeVar("I")  # noqa: E741  (one call's input)
R = TypeVar("R")


class GroupCommitter(Generic[I, R]):
    """Concurrent calls of one write, grouped (see the module's notes).

    ``one(item)`` writes one call's item (result, or raises); ``many(items)`` writes several together and returns,
    in order, each one's result or its ``BaseException``. ``groups`` counts the writes that carried more than one
    call and ``grouped_calls`` the calls they carried; ``alone`` the calls written on their own.
    """

    def __init__(self, one: Callable[[I], Awaitable[R]],
                 many: Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]], *, max_calls: int,
                 flushes: int) -> None:
        if max_calls < 1 or flushes < 1:
            raise ValueError("max_calls and flushes must be at least 1")
        self._one, self._many = one, many
        self.max_calls, self.flushes = max_calls, flushes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[tuple[I, asyncio.Future[R]]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = self.grouped_calls = self.alone = 0

    async def submit(self, item: I) -> R:
        """Write ``item`` (alone or with others waiting meanwhile) and return its result, or raise its error."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (asyncio.run again): the old one's state died with it
            self._loop, self._queue, self._running, self._tasks = loop, deque(), 0, set()
        if not self._queue and self._running < self.flushes:
            self._running += 1
            self.alone += 1
            try:
                return await self._one(item)
            finally:
                self._running -= 1
                self._start_flushes()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        self._start_flushes()
        return await future  # cancelled with its caller: the flush skips it, or drops its answer

    def _start_flushes(self) -> None:
        while self._queue and self._running < self.flushes:
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        try:
            while self._queue:
                group: list[tuple[I, asyncio.Future[R]]] = []
                while self._queue and len(group) < self.max_calls:
                    call = self._queue.popleft()
                    if not call[1].done():  # its caller was cancelled while it waited
                        group.append(call)
                if group:
                    await self._write(group)
        finally:
            self._running -= 1

    async def _write(self, group: list[tuple[I, asyncio.Future[R]]]) -> None:
        futures = [future for _, future in group]
        try:
            if len(group) == 1:
                self.alone += 1
                outcomes: Sequence[R | BaseException] = [await self._one(group[0][0])]
            else:
                self.groups += 1
                self.grouped_calls += len(group)
                outcomes = await self._many([item for item, _ in group])
                if len(outcomes) != len(group):
                    raise RuntimeError(f"a group write answered {len(outcomes)} of {len(group)} calls")
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # the whole group's: each caller gets it
            outcomes = [exc] * len(group)
        raised: set[int] = set()
        for future, outcome in zip(futures, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                if id(outcome) in raised:  # each caller raises an exception object of its own
                    outcome = _copied(outcome)
                raised.add(id(outcome))
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _copied(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for another caller (its attributes, such as ``may_have_committed``, and its cause kept);
    ``exc`` itself when its class cannot be copied."""
    try:
        twin = copy.copy(exc)
    except Exception:
        return exc
    twin.__cause__ = exc.__cause__
    return twin
