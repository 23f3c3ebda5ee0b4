#!/usr/bin/python3
"""WebSocket echo backend built on Debian's python3-websockets (10.4, legacy asyncio API).

Listens on 127.0.0.1 on a free port and prints "PORT <n>" on stdout once it accepts
connections. Echoes text as text and binary as binary. A text message
"close:CODE:REASON" makes it close the connection with that code and reason instead.
Selects the subprotocol "chat" when the client offers it.

Stops (exit 0) on SIGTERM or SIGINT, and with --exit-on-stdin-eof also when its standard
input reaches EOF, so that it never outlives the test process that spawned it with a stdin pipe.
"""
import asyncio
import signal
import os
import sys

import websockets

MAX_SIZE = 64 * 1024 * 1024


async def handler(ws):
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await ws.close(code=int(code), reason=reason)
                return
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop(*_):
        if not stop.done():
            stop.set_result(None)

    loop.add_signal_handler(signal.SIGTERM, request_stop)
    loop.add_signal_handler(signal.SIGINT, request_stop)
    if "--exit-on-stdin-eof" in sys.argv[1:]:
        # EOF on stdin (the parent went away or closed the pipe) also stops the server.
        fd = sys.stdin.fileno()
        os.set_blocking(fd, False)

        def on_stdin():
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(fd)
                request_stop()

        try:
            loop.add_reader(fd, on_stdin)
        except PermissionError:  # a regular file or /dev/null: cannot be polled, read it now
            os.set_blocking(fd, True)
            while os.read(fd, 65536):
                pass
            request_stop()

    async with websockets.serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=["chat"],
        max_size=MAX_SIZE,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
