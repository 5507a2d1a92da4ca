"""A lost acknowledgement, made on purpose: a TCP proxy that lets a commit happen and then cuts the connection.

Between the pool and the server, ``AckDropProxy`` forwards the PostgreSQL protocol both ways. When armed, it holds
back the server's answer from the next ``CommandComplete`` on; when the ``ReadyForQuery`` that follows says the
session is idle again (the transaction has committed: an autocommit statement, or a ``COMMIT``), it closes both
sides without passing the answer on. The write is in the table; the caller sees a broken connection and cannot
know it: exactly the case of a backend killed between the commit and the acknowledgement, made every time instead
of by chance.

Connect through it with ``sslmode=disable`` (the stream must be readable). Example::

    async with AckDropProxy(settings.host, settings.port) as proxy:
        proxied = settings_via(settings, proxy)
        proxy.arm()      # the next commit's acknowledgement is lost
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from luminar_store.config import Settings

__all__ = ["AckDropProxy", "settings_via"]

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class AckDropProxy:
    """A proxy on a free port of 127.0.0.1 to ``host:port``; ``arm(n)`` loses the next ``n`` acknowledgements.

    ``dropped`` counts the acknowledgements lost so far, ``connections`` the client connections accepted."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.host = "127.0.0.1"
        self.port = 0
        self.armed = 0
        self.dropped = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AckDropProxy:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError, EOFError):
                await task
        await self._server.wait_closed()

    def arm(self, n: int = 1) -> None:
        """Lose the acknowledgements of the next ``n`` commits (on whichever connections make them)."""
        self.armed += n

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.close()
            self._tasks.discard(task)
            return
        startup = asyncio.Queue[bool]()
        up = asyncio.create_task(self._client_to_server(creader, swriter, startup))
        down = asyncio.create_task(self._server_to_client(sreader, cwriter, startup))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is closing: end quietly (asyncio would log a cancelled connection handler)
        finally:
            for pump in (up, down):
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, EOFError):
                    await pump
            for writer in (cwriter, swriter):
                writer.close()
            self._tasks.discard(task)

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                startup: asyncio.Queue[bool]) -> None:
        # The start-up phase's messages have no type byte; an SSL or GSS request is answered by one byte. Each is
        # announced to the other pump (True: expect one byte; False: typed messages from now on).
        while True:
            head = await reader.readexactly(8)
            length, code = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
            body = await reader.readexactly(length - 8)
            request = code in (SSL_REQUEST, GSSENC_REQUEST)
            startup.put_nowait(request)
            writer.write(head + body)
            await writer.drain()
            if not request:
                break
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _server_to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                startup: asyncio.Queue[bool]) -> None:
        while await startup.get():
            writer.write(await reader.readexactly(1))
            await writer.drain()
        held: bytearray | None = None
        while True:
            head = await reader.readexactly(5)
            message = head + await reader.readexactly(int.from_bytes(head[1:], "big") - 4)
            kind = message[:1]
            if held is None and kind == b"C" and self.armed > 0:
                held = bytearray()
            if held is None:
                writer.write(message)
                await writer.drain()
                continue
            held += message
            if kind == b"Z":
                if message[5:6] == b"I" and self.armed > 0:
                    self.armed -= 1
                    self.dropped += 1
                    return  # committed and idle: the answer is never passed on; both sides are closed
                writer.write(held)
                await writer.drain()
                held = None


def settings_via(settings: Settings, proxy: AckDropProxy) -> Settings:
    """``settings`` pointed at ``proxy`` (``sslmode=disable``: the proxy reads the stream)."""
    return dataclasses.replace(settings, host=proxy.host, port=proxy.port, sslmode="disable")
