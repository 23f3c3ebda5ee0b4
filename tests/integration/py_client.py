#!/usr/bin/python3
"""WebSocket client built on Debian's python3-websockets (10.4, legacy asyncio API).

Usage: py_client.py ws://HOST:PORT/PATH
Connects, sends a text and a binary message, checks that each comes back unchanged and of
the same type, then closes with 1000. Exits 0 on success; otherwise prints what failed on
stderr and exits 1.
"""
import asyncio
import sys

import websockets

TEXT = "hello from python \u2713"
BINARY = bytes(range(256)) * 4


async def run(uri):
    async with websockets.connect(uri, open_timeout=10, close_timeout=10, ping_interval=None) as ws:
        await ws.send(TEXT)
        reply = await asyncio.wait_for(ws.recv(), 10)
        if not isinstance(reply, str) or reply != TEXT:
            return f"text echo mismatch: sent {TEXT!r}, got {reply!r}"
        await ws.send(BINARY)
        reply = await asyncio.wait_for(ws.recv(), 10)
        if not isinstance(reply, bytes) or reply != BINARY:
            return f"binary echo mismatch: sent {len(BINARY)} bytes, got {type(reply).__name__} {reply[:32]!r}"
        await ws.close(code=1000, reason="done")
        if ws.close_code != 1000:
            return f"close handshake ended with code {ws.close_code} (reason {ws.close_reason!r}), expected 1000"
    return None


def main():
    if len(sys.argv) != 2:
        print("usage: py_client.py ws://HOST:PORT/PATH", file=sys.stderr)
        return 2
    try:
        failure = asyncio.run(run(sys.argv[1]))
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        failure = f"{type(exc).__name__}: {exc}"
    if failure:
        print(f"py_client: FAILED: {failure}", file=sys.stderr)
        return 1
    print("py_client: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
