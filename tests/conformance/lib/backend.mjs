// The test BACKEND for the client side of the conformance run: a raw WebSocket server that
// answers each upgrade with 101 (RFC 6455 section 4.2.2) and hands the connection to the test
// as a WsPeer in the server role, so that every frame Tether sends upstream is checked against
// the client's sender rules (masked with a key per frame, RSV 0, known opcodes, minimal lengths,
// well-formed fragments, valid close frames) and the test can answer with any bytes at all,
// misbehaving ones included.
import { once } from 'node:events';
import net from 'node:net';
import { DEFAULT_TIMEOUT_MS, WsPeer, acceptKey, timeout } from './peer.mjs';

/** Returns { port, connections, waitConnection(path) -> WsPeer (with .path, .headers), close() }. */
export async function startRawBackend() {
  const connections = [];
  const waiters = new Map(); // path -> resolve
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const [, path] = lines[0].split(' ');
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${acceptKey(headers['sec-websocket-key'])}\r\n\r\n`,
      );
      const peer = new WsPeer(socket, 'server', { leftover: buf.subarray(end + 4), name: `backend ${path}` });
      peer.path = path;
      peer.headers = headers;
      connections.push(peer);
      socket.resume();
      const w = waiters.get(path);
      if (w) {
        waiters.delete(path);
        w(peer);
      }
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: server.address().port,
    connections,
    waitConnection(path, ms = DEFAULT_TIMEOUT_MS) {
      const found = connections.find((c) => c.path === path);
      if (found) return Promise.resolve(found);
      return timeout(new Promise((resolve) => waiters.set(path, resolve)), ms, `a backend connection for ${path}`);
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
