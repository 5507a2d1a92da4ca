"""An in-process asyncio TCP proxy in front of the session's PostgreSQL, to stage outages without stopping it.

Three modes, switched at any time from the event loop that started it:

* ``forward()``: listen and pass bytes both ways (the server is there);
* ``refuse()``: stop listening (new connections are refused, as by a host whose server is down) and cut the
  connections in flight (as a server's death does);
* ``blackhole()``: accept new connections but never answer them (a server or network that swallows packets: only
  the client's connect timeout ends the wait), and cut the connections in flight.

Example::

    async with Proxy(pg_server.host, pg_server.port) as proxy:
        settings = pg_server.settings(name, LUMINAR_DB_PORT=str(proxy.port))
        await proxy.refuse()
        ...
        await proxy.forward()
"""

from __future__ import annotations

import asyncio

__all__ = ["Proxy"]

_LISTEN_HOST = "127.0.0.1"


class Proxy:
    """A TCP proxy from ``127.0.0.1:<port>`` (a free port chosen at ``start()``) to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.mode = "forward"
        self.accepted = 0  # connections accepted, every mode
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()  # every open socket (both sides of each link)
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1, forwarding."""
        await self._listen()
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, _LISTEN_HOST, self.port, reuse_address=True)

    async def _cut(self) -> None:
        """Reset every connection in flight, and return once their sockets are closed (the client can see it)."""
        writers, self._links = list(self._links), set()
        for writer in writers:
            writer.transport.abort()
        for writer in writers:
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def refuse(self) -> None:
        """Stop listening (connections are refused) and cut every connection in flight."""
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._cut()

    async def blackhole(self) -> None:
        """Accept connections but never answer; cut every connection in flight."""
        self.mode = "blackhole"
        if self._server is None:
            await self._listen()
        await self._cut()

    async def forward(self) -> None:
        """Forward again (listening again on the same port when it was refusing); connections accepted while in
        blackhole mode are cut (they were never answered)."""
        self.mode = "forward"
        await self._cut()
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        """Stop listening, cut everything and wait for the handlers to end (none is left to the loop's shutdown)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._cut()
        handlers = [t for t in self._handlers if t is not asyncio.current_task()]
        if handlers:
            await asyncio.wait(handlers, timeout=10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        self._links.add(writer)
        if self.mode != "forward":
            try:  # swallow whatever comes until the client or a mode change ends it
                while await reader.read(65536):
                    pass
            except OSError:
                pass
            finally:
                self._drop(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._drop(writer)
            return
        self._links.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._drop(writer)
        self._drop(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()  # one side ended: end the other

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._links.discard(writer)
        writer.transport.abort()
