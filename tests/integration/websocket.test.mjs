// WebSocket relay: Node `ws` client → tether → Node `ws` backend (both real, unmodified peers).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  RawHttp,
  assertOneLineReason,
  deadPort,
  openWs,
  startNodeWsBackend,
  startRefusingBackend,
  startTether,
  withTimeout,
  wsUnexpectedResponse,
  settleAll,
} from './lib/harness.mjs';

const MiB = 1024 * 1024;
const TEST_TIMEOUT = 30_000;

describe('websocket relay (ws client → tether → ws backend)', () => {
  let backend;
  let refusing;
  let tether;
  let base; // ws://127.0.0.1:PORT

  before(async () => {
    backend = await startNodeWsBackend({
      handleProtocols: (protocols) => (protocols.has('b') ? 'b' : false),
    });
    refusing = await startRefusingBackend(403);
    const dead = await deadPort();
    tether = await startTether(`
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /echo/ { tether_pass ws://127.0.0.1:${backend.port}; }
    location /rewrite/ { tether_pass ws://127.0.0.1:${backend.port}/base/; }
    location /down/ { tether_pass ws://127.0.0.1:${dead}; }
    location /refuse/ { tether_pass ws://127.0.0.1:${refusing.port}; }
}
`);
    base = `ws://127.0.0.1:${tether.port}`;
  });

  after(async () => {
    // Stop tether first (asserting its clean exit) but always close the backends too.
    await settleAll([
      tether?.stop(),
      backend?.close(),
      refusing?.close(),
    ]);
  });

  /** A client on a unique /echo/ path and the backend connection tether opened for it. */
  async function pair(name, protocols = [], options = {}) {
    const tag = `${name}-${randomBytes(4).toString('hex')}`;
    const path = `/echo/${tag}`;
    const client = await openWs(base + path, protocols, options);
    const server = await backend.waitConnection((c) => c.path === path);
    return { client, server, path };
  }

  async function closeClient({ client }) {
    if (client.ws.readyState === client.ws.OPEN) client.ws.close(1000);
    await withTimeout(client.closed, 10_000, 'the client to close');
  }

  test('text message echoes as text', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('text');
    p.client.ws.send('hello tether ✓');
    const msg = await p.client.next();
    assert.equal(msg.isBinary, false);
    assert.equal(msg.data.toString('utf8'), 'hello tether ✓');
    assert.equal(p.server.messages.length, 1);
    assert.equal(p.server.messages[0].isBinary, false);
    assert.equal(p.server.messages[0].data.toString('utf8'), 'hello tether ✓');
    await closeClient(p);
  });

  test('binary message echoes as binary, byte for byte', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('binary');
    const payload = Buffer.concat([Buffer.from([...Array(256).keys()]), randomBytes(1000)]);
    p.client.ws.send(payload);
    const msg = await p.client.next();
    assert.equal(msg.isBinary, true);
    assert.ok(payload.equals(msg.data), 'echoed binary differs from what was sent');
    assert.ok(payload.equals(p.server.messages[0].data), 'backend received different bytes');
    await closeClient(p);
  });

  test('a 1 MiB message passes each way', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('onemib');
    const up = randomBytes(MiB);
    p.client.ws.send(up);
    const echoed = await p.client.next();
    assert.equal(p.server.messages.length, 1);
    assert.equal(p.server.messages[0].data.length, MiB);
    assert.ok(up.equals(p.server.messages[0].data), 'client → backend: 1 MiB message altered');
    assert.ok(up.equals(echoed.data), 'echo: 1 MiB message altered');

    // Backend → client on its own (not an echo), as text this time.
    const down = 'x'.repeat(MiB - 3) + '✓'; // 1 MiB of UTF-8, ending in a multi-byte character
    p.server.ws.send(down);
    const got = await p.client.next();
    assert.equal(got.isBinary, false);
    assert.equal(got.data.length, Buffer.byteLength(down));
    assert.equal(got.data.toString('utf8'), down, 'backend → client: 1 MiB text altered');
    await closeClient(p);
  });

  test('a 16 MiB message (the default limit) passes', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('sixteen');
    const big = randomBytes(16 * MiB);
    p.client.ws.send(big);
    const echoed = await p.client.next(20_000);
    assert.equal(echoed.data.length, big.length);
    assert.ok(big.equals(echoed.data), '16 MiB message altered');
    await closeClient(p);
  });

  test('a fragmented message from the client arrives whole', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('fragments');
    // compress: false so that each fragment goes out as its own frame even if deflate were on.
    p.client.ws.send('first,', { fin: false, compress: false });
    p.client.ws.send('second,', { fin: false, compress: false });
    p.client.ws.send('third', { fin: true, compress: false });
    const msg = await p.client.next();
    assert.equal(msg.isBinary, false);
    assert.equal(msg.data.toString(), 'first,second,third');
    assert.equal(p.server.messages.length, 1, 'the backend saw the fragments as separate messages');
    assert.equal(p.server.messages[0].data.toString(), 'first,second,third');

    // Binary fragments too.
    const parts = [randomBytes(10), randomBytes(70_000), randomBytes(3)];
    p.client.ws.send(parts[0], { fin: false, binary: true, compress: false });
    p.client.ws.send(parts[1], { fin: false, binary: true, compress: false });
    p.client.ws.send(parts[2], { fin: true, binary: true, compress: false });
    const bin = await p.client.next();
    assert.equal(bin.isBinary, true);
    assert.ok(Buffer.concat(parts).equals(bin.data), 'reassembled binary message differs');
    await closeClient(p);
  });

  test("the backend's chosen subprotocol reaches the client", { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('subproto', ['a', 'b']);
    assert.equal(p.client.ws.protocol, 'b');
    assert.equal(p.server.protocol, 'b');
    assert.deepEqual(
      p.server.headers['sec-websocket-protocol'].split(',').map((s) => s.trim()),
      ['a', 'b'],
      'the backend did not see the protocols the client offered',
    );
    await closeClient(p);
  });

  test('no subprotocol offered → none chosen', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('noproto');
    assert.equal(p.client.ws.protocol, '');
    assert.equal(p.server.headers['sec-websocket-protocol'], undefined);
    await closeClient(p);
  });

  test('the backend sees the path, query and forwarded headers', { timeout: TEST_TIMEOUT }, async () => {
    const path = `/echo/room/42?user=ann&x=a%20b&tag=${randomBytes(4).toString('hex')}`;
    const client = await openWs(base + path, [], {
      headers: {
        Cookie: 'sid=abc123; theme=dark',
        Authorization: 'Bearer token-xyz',
        'User-Agent': 'tether-integration/1.0',
      },
      origin: 'https://app.example.com',
    });
    const server = await backend.waitConnection((c) => c.path === path);
    const h = server.headers;
    assert.equal(server.path, path, 'path and query must reach the backend unchanged');
    assert.equal(h.cookie, 'sid=abc123; theme=dark');
    assert.equal(h.authorization, 'Bearer token-xyz');
    assert.equal(h.origin, 'https://app.example.com');
    assert.equal(h['user-agent'], 'tether-integration/1.0');
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], `127.0.0.1:${tether.port}`);
    await closeClient({ client });
  });

  test('tether_pass with a URI replaces the location prefix', { timeout: TEST_TIMEOUT }, async () => {
    const tag = randomBytes(4).toString('hex');
    const client = await openWs(`${base}/rewrite/x/y?q=1&tag=${tag}`);
    const server = await backend.waitConnection((c) => c.path.endsWith(`tag=${tag}`));
    assert.equal(server.path, `/base/x/y?q=1&tag=${tag}`);
    client.ws.send('via rewrite');
    assert.equal((await client.next()).data.toString(), 'via rewrite');
    await closeClient({ client });
  });

  test('close code and reason pass client → backend', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('close-up');
    p.client.ws.close(4001, 'bye');
    const atBackend = await withTimeout(p.server.closed, 10_000, 'the backend to see the close');
    assert.deepEqual(atBackend, { code: 4001, reason: 'bye' });
    const atClient = await withTimeout(p.client.closed, 10_000, 'the client close handshake to finish');
    assert.equal(atClient.code, 4001, 'the backend echoed the close code; the client should see it');
  });

  test('close code and reason pass backend → client', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('close-down');
    p.server.ws.close(4002, 'later');
    const atClient = await withTimeout(p.client.closed, 10_000, 'the client to see the close');
    assert.deepEqual(atClient, { code: 4002, reason: 'later' });
    const atBackend = await withTimeout(p.server.closed, 10_000, 'the backend close handshake to finish');
    assert.equal(atBackend.code, 4002);
  });

  test('pings get pongs and pass through both ways', { timeout: TEST_TIMEOUT }, async () => {
    const p = await pair('ping');
    const pingAtBackend = new Promise((resolve) => p.server.ws.once('ping', resolve));
    const pong = new Promise((resolve) => p.client.ws.once('pong', resolve));
    p.client.ws.ping(Buffer.from('p-from-client'));
    assert.equal((await withTimeout(pong, 10_000, 'a pong at the client')).toString(), 'p-from-client');
    const seen = await withTimeout(pingAtBackend, 10_000, "the client's ping to reach the backend");
    assert.equal(seen.toString(), 'p-from-client');

    const pingAtClient = new Promise((resolve) => p.client.ws.once('ping', resolve));
    const pongAtBackend = new Promise((resolve) => p.server.ws.once('pong', resolve));
    p.server.ws.ping(Buffer.from('p-from-backend'));
    assert.equal((await withTimeout(pongAtBackend, 10_000, 'a pong at the backend')).toString(), 'p-from-backend');
    const seenByClient = await withTimeout(pingAtClient, 10_000, "the backend's ping to reach the client");
    assert.equal(seenByClient.toString(), 'p-from-backend');
    await closeClient(p);
  });

  test('backend down → 502 with a one-line reason', { timeout: TEST_TIMEOUT }, async () => {
    const res = await wsUnexpectedResponse(`${base}/down/x`);
    assert.equal(res.status, 502);
    assert.match(res.headers['content-type'] ?? '', /^text\/plain\b/);
    assert.match(res.body, /^[^\r\n]*\S[^\r\n]*\r?\n?$/, `body ${JSON.stringify(res.body)}`);
  });

  test('backend refusing the handshake → 502 with a one-line reason', { timeout: TEST_TIMEOUT }, async () => {
    const res = await wsUnexpectedResponse(`${base}/refuse/x`);
    assert.equal(res.status, 502);
    assert.match(res.headers['content-type'] ?? '', /^text\/plain\b/);
    assert.match(res.body, /^[^\r\n]*\S[^\r\n]*\r?\n?$/, `body ${JSON.stringify(res.body)}`);
  });

  test('a plain GET to a tether_pass location (all transports) → 400', { timeout: TEST_TIMEOUT }, async () => {
    const conn = await RawHttp.connect(tether.port);
    try {
      const res = await conn.request(`GET /echo/plain HTTP/1.1\r\nHost: 127.0.0.1:${tether.port}\r\n\r\n`);
      assertOneLineReason(res, 400, 'non-upgrade GET');
    } finally {
      conn.destroy();
    }
  });

  test('back-pressure: a paused client stops tether reading from the backend', { timeout: 60_000 }, async (t) => {
    const COUNT = 1024;
    const SIZE = 64 * 1024; // 1024 × 64 KiB = 64 MiB
    const TOTAL = COUNT * SIZE;
    const p = await pair('backpressure');
    const socket = p.client.ws._socket;
    socket.pause(); // the client stops reading: its kernel buffers fill, then tether's must stop growing

    const frame = (i) => {
      const b = Buffer.alloc(SIZE, i & 0xff);
      b.writeUInt32BE(i, 0);
      return b;
    };
    let flushed = 0; // messages whose bytes the backend's kernel accepted
    for (let i = 0; i < COUNT; i++) p.server.ws.send(frame(i), () => flushed++);

    // No event says "tether stopped reading", so watch the backend's send queue until it stops
    // shrinking (stalled) — or until it empties, which means tether swallowed all 64 MiB.
    const drained = new Promise((resolve) => p.server.ws._socket.once('drain', resolve));
    const stalled = new Promise((resolve) => {
      let last = -1;
      let still = 0;
      const timer = setInterval(() => {
        const now = p.server.ws.bufferedAmount;
        still = now === last ? still + 1 : 0;
        last = now;
        if (still >= 10) {
          clearInterval(timer);
          resolve(now);
        }
      }, 50);
      drained.then(() => clearInterval(timer));
    });
    const outcome = await withTimeout(
      Promise.race([drained.then(() => 'drained'), stalled]),
      30_000,
      'the backend send queue to stall or drain',
    );
    assert.notEqual(
      outcome,
      'drained',
      'the backend flushed all 64 MiB while the client read nothing: tether buffers without bound',
    );
    const queued = outcome;
    const absorbed = TOTAL - queued; // held by tether and the kernel buffers of both hops
    t.diagnostic(`stalled with ${queued} bytes queued at the backend; ${absorbed} bytes in flight`);
    assert.ok(
      queued >= 16 * MiB,
      `only ${queued} bytes still queued at the backend: tether and the sockets absorbed ${absorbed} bytes`,
    );
    assert.ok(flushed < COUNT);

    // Resume: every message arrives, whole and in order.
    let expected = 0;
    let bytes = 0;
    const all = new Promise((resolve, reject) => {
      p.client.ws.removeAllListeners('message');
      p.client.ws.on('message', (data, isBinary) => {
        try {
          assert.equal(isBinary, true);
          assert.equal(data.length, SIZE);
          assert.equal(data.readUInt32BE(0), expected, 'message out of order');
          assert.equal(data[SIZE - 1], expected & 0xff, 'message content altered');
        } catch (err) {
          reject(err);
          return;
        }
        bytes += data.length;
        if (++expected === COUNT) resolve();
      });
    });
    socket.resume();
    await withTimeout(all, 40_000, () => `all ${COUNT} messages after resume (got ${expected})`);
    assert.equal(bytes, TOTAL);
    await closeClient(p);
  });
});
