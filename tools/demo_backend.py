#!/usr/bin/python3
"""Tether's demo backend: an ordinary WebSocket server (python3-websockets) that knows nothing
of Tether. Paths under /chat broadcast each message to every client of the same path; any other
path echoes. Usage: demo_backend.py [PORT] (default 9001; 0 picks a free port, printed as PORT n)."""

import asyncio
import sys

import websockets

rooms = {}


async def handler(ws, path):
    if path.startswith("/chat"):
        room = rooms.setdefault(path, set())
        room.add(ws)
        try:
            async for message in ws:
                websockets.broadcast(room, message)
        finally:
            room.discard(ws)
    else:
        async for message in ws:
            await ws.send(message)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    async with websockets.serve(handler, "127.0.0.1", port, max_size=16 * 1024 * 1024) as server:
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
