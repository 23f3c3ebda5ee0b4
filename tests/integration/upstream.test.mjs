// Upstreams and limits: named pools reached by host name, round robin, the connect/handshake
// deadline, and the message size limit. Node `ws` peers on both sides.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import {
  assertOneLineReason,
  openWs,
  startNodeWsBackend,
  startTether,
  withTimeout,
  wsUnexpectedResponse,
  settleAll,
} from './lib/harness.mjs';

const TEST_TIMEOUT = 30_000;

describe('upstream pools, deadlines and limits', () => {
  let a;
  let b;
  let silent; // accepts TCP, never answers the handshake
  const silentSockets = new Set();
  let tether;
  let base;

  before(async () => {
    a = await startNodeWsBackend();
    b = await startNodeWsBackend();
    silent = net.createServer((s) => {
      silentSockets.add(s);
      s.on('close', () => silentSockets.delete(s));
      s.on('error', () => {});
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    tether = await startTether(`
error_log stderr info;
upstream pair {
    server localhost:${a.port};
    server 127.0.0.1:${b.port};
}
server {
    listen 127.0.0.1:0;
    location /pool/ { tether_pass ws://pair; }
    location /slow/ {
        tether_pass ws://127.0.0.1:${silent.address().port};
        tether_connect_timeout 300ms;
    }
    location /small/ {
        tether_pass ws://127.0.0.1:${a.port};
        tether_max_message 1k;
    }
}
`);
    base = `ws://127.0.0.1:${tether.port}`;
  });

  after(async () => {
    for (const s of silentSockets) s.destroy();
    await settleAll([
      tether?.stop(),
      a?.close(),
      b?.close(),
      new Promise((resolve) => silent.close(resolve)),
    ]);
  });

  test('a named upstream spreads sessions round robin, one server by host name', { timeout: TEST_TIMEOUT }, async () => {
    const clients = [];
    for (let i = 0; i < 4; i++) {
      const c = await openWs(`${base}/pool/rr-${i}`);
      c.ws.send(`hi ${i}`);
      assert.equal((await c.next()).data.toString(), `hi ${i}`);
      clients.push(c);
    }
    const onA = a.connections.filter((c) => c.path.startsWith('/pool/rr-')).length;
    const onB = b.connections.filter((c) => c.path.startsWith('/pool/rr-')).length;
    assert.equal(onA, 2, 'localhost server got every other session');
    assert.equal(onB, 2, '127.0.0.1 server got every other session');
    for (const c of clients) {
      c.ws.close(1000);
      await withTimeout(c.closed, 10_000, 'close');
    }
  });

  test('an upstream that never answers the handshake → 502 after tether_connect_timeout', { timeout: TEST_TIMEOUT }, async () => {
    const res = await wsUnexpectedResponse(`${base}/slow/x`);
    assert.equal(res.status, 502);
    assertOneLineReason(res, 502);
    assert.match(res.body, /did not complete the WebSocket handshake in time/);
  });

  test('a message over tether_max_message closes the client with 1009 and the backend with 1001', { timeout: TEST_TIMEOUT }, async () => {
    const path = '/small/big';
    const c = await openWs(base + path);
    const server = await a.waitConnection((conn) => conn.path === path);
    c.ws.send('x'.repeat(1024)); // exactly the limit passes
    assert.equal((await c.next()).data.length, 1024);
    c.ws.send('x'.repeat(1025));
    const closed = await withTimeout(c.closed, 10_000, 'the client close');
    assert.equal(closed.code, 1009);
    const backendClosed = await withTimeout(server.closed, 10_000, 'the backend close');
    assert.equal(backendClosed.code, 1001);
    assert.equal(server.messages.length, 1, 'the oversized message never reached the backend');
  });
});
