// Limits: every limit of the LIMITS change refuses or closes with its exact status (or close
// code) and one-line reason, is counted in the stats by exactly the number of hits (the JSON and
// the Prometheus text agree), leaves the gauges at their baseline once the clients have left,
// and leaves other clients and addresses unaffected.
//
//   max_connections                 503 "too many connections"
//   max_connections_per_client      429 "too many connections from this client address"
//   tether_max_sessions_per_client  429 "too many sessions from this client address"
//   client_max_header_size          431          client_max_body_size     413
//   client_header_timeout           408 "request not received in time" (slowloris)
//   client_body_timeout             408 "request body not received in time"
//   send_timeout                    an HTTP client, a WebSocket client or backend, an SSE client,
//                                   or a session's backend, that takes none of its pending output
//                                   is dropped; the other side of a relay gets a close whose
//                                   handshake completes (closed with a FIN, no reset); a session's
//                                   backend that reads nothing also gets POSTs answered 503 once
//                                   tether_buffer bytes wait for it
//   tether_max_message              WebSocket 1009 either way, POST 413
//   tether_idle_timeout             close 1001 "idle timeout" to both sides of an idle relay
//
// Linux routes all of 127.0.0.0/8 to lo, so 127.0.0.2, 127.0.0.3 ... are other client
// addresses (localAddress). Each test starts its own tether, so its counters start at zero, and
// reads the stats over one keep-alive connection from 127.0.0.254 (statsConnection): that
// connection is the baseline, one client connection from one address.
//
// Every wait is on an event: a response, a close, a log line, or the stats endpoint showing
// that tether has handled a close the client cannot observe. The timeouts configured here are
// small (hundreds of ms) so the tests are quick; no test asserts how long anything took.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import {
  RawHttp,
  assertOneLineReason,
  checkConfig,
  deadPort,
  openWs,
  startNodeWsBackend,
  startTether,
  withTimeout,
  wsUnexpectedResponse,
} from './lib/harness.mjs';
import { LIMIT_NAMES, closedRequest, statsConnection } from './lib/ops.mjs';
import { assertMessage, backendClosed, openSse, readOpen } from './lib/transports.mjs';

const TEST_TIMEOUT = 60_000;
// A guard for waits that include a configured timeout (send_timeout, idle timeout, header and
// body timeouts) under a sanitizer on a loaded machine.
const SLOW_GUARD_MS = 30_000;
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** hits_total with every limit at 0 except those in `over`. */
function hits(over = {}) {
  for (const k of Object.keys(over)) assert.ok(LIMIT_NAMES.includes(k), `no limit named ${k}`);
  return { ...Object.fromEntries(LIMIT_NAMES.map((l) => [l, 0])), ...over };
}

/**
 * The whole `limits` object expected: by default the baseline of an idle tether read through
 * the stats connection (1 connection, 0 sessions, 1 address).
 */
function limitsWith(maxConnections, { connections = 1, sessions = 0, addresses = 1, hit = {} } = {}) {
  return {
    client_connections: connections,
    max_connections: maxConnections,
    client_sessions: sessions,
    client_addresses: addresses,
    hits_total: hits(hit),
  };
}

/** Awaits the stats showing exactly `expected` as `limits` (and Prometheus agreeing). */
async function expectLimits(stats, expected, what) {
  return stats.waitLimits((l) => isDeepStrictEqual(l, expected), `${what}: limits ${JSON.stringify(expected)}`, SLOW_GUARD_MS);
}

/**
 * Starts a Node ws echo backend and tether with `conf(backendPort)`, opens the stats
 * connection, runs fn({ tether, backend, stats, port }), and stops everything however fn ends.
 */
async function withTether(conf, fn) {
  const backend = await startNodeWsBackend();
  let tether;
  let stats;
  try {
    tether = await startTether(conf(backend.port));
    stats = await statsConnection(tether.port);
    await fn({ tether, backend, stats, port: tether.port });
  } finally {
    stats?.close();
    try {
      await tether?.stop();
    } finally {
      await backend.close();
    }
  }
}

/** The usual server: a relayed location /ws/ (all transports), /ok, and the stats. */
function serverConf(backendPort, { main = '', server = '', location = '' } = {}) {
  return `
error_log stderr info;
${main}
server {
    listen 127.0.0.1:0;
    ${server}
    location /ws/ { tether_pass ws://127.0.0.1:${backendPort}; ${location} }
    location = /ok { return 200 "ok"; }
    location = /tether/stats { tether_stats; }
}
`;
}

/** A connection from `localAddress` that was served one request and stays open (keep-alive). */
async function heldHttp(port, localAddress) {
  const conn = await RawHttp.connect(port, '127.0.0.1', { localAddress });
  const res = await conn.request(`GET /ok HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  assert.equal(res.status, 200, `GET /ok from ${localAddress}: ${res.rawHead}`);
  assert.equal(res.body, 'ok');
  assert.ok(!conn.isClosed, `the keep-alive connection from ${localAddress} was closed`);
  return conn;
}

/**
 * A new connection from `localAddress` that is refused on accept: tether answers `status` with
 * the one-line `reason` before any request and closes. The client sends a request anyway, as a
 * real one would.
 */
async function assertRefused(port, localAddress, status, reason, what) {
  const conn = await RawHttp.connect(port, '127.0.0.1', { localAddress });
  try {
    conn.write(`GET /ok HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    const res = await conn.readResponse();
    assertOneLineReason(res, status, what);
    assert.equal(res.body, `${reason}\n`, `${what}: the reason`);
    assert.match(String(res.headers.connection), /^close$/i, `${what}: Connection: close\n${res.rawHead}`);
    await conn.waitClose();
  } finally {
    conn.destroy();
  }
}

/** Closes a client socket (RawHttp or ws) and awaits the close on our side. */
async function closeRaw(conn) {
  const closed = once(conn.socket, 'close');
  conn.destroy();
  await closed;
}

/** The 4xx/5xx answer to a WebSocket upgrade, in the shape assertOneLineReason takes. */
async function upgradeRefused(url, options) {
  const r = await wsUnexpectedResponse(url, [], options);
  return { ...r, rawHead: `HTTP/1.1 ${r.status}` };
}

/** Opens a relay and checks one echo through it. */
async function echoRelay(url, options = {}) {
  const c = await openWs(url, [], options);
  c.ws.send('ping?');
  const m = await c.next();
  assert.equal(m.data.toString(), 'ping?', `the echo through ${url}`);
  return c;
}

/** Closes a ws client with 1000 and awaits the close. */
async function closeWs(c) {
  if (c.ws.readyState === c.ws.OPEN) c.ws.close(1000, 'done');
  return withTimeout(c.closed, SLOW_GUARD_MS, 'the WebSocket client to close');
}

/**
 * Writes `bytes` to `socket` one byte at a time (a slow client). Stops at the end, when
 * stop() is called, or once the socket is closed. Returns { stop(), sent() }.
 */
function trickle(socket, bytes, intervalMs = 10) {
  let i = 0;
  const timer = setInterval(() => {
    if (i >= bytes.length || socket.destroyed || !socket.writable) {
      clearInterval(timer);
      return;
    }
    socket.write(bytes.subarray(i, i + 1));
    i++;
  }, intervalMs);
  return {
    stop: () => clearInterval(timer),
    sent: () => i,
  };
}

/**
 * Sends `chunk` on the ws socket over and over, each after the previous one was handed to the
 * kernel, until the socket is closing or `maxBytes` were sent (a bound: it stops by itself).
 * Resolves to { sent (bytes), error (of the send that failed, or null) }.
 */
async function flood(ws, chunk, maxBytes = 256 * 1024 * 1024) {
  let sent = 0;
  while (ws.readyState === ws.OPEN && sent < maxBytes) {
    const error = await new Promise((resolve) => ws.send(chunk, resolve));
    if (error) return { sent, error };
    sent += chunk.length;
  }
  return { sent, error: null };
}

/**
 * Watches a socket for a reset. Tether closes a WebSocket connection with a FIN once the close
 * handshake is done; it resets it (closes with unread bytes) only when it gives up waiting for
 * the peer's close reply, which it cannot read while reading is paused for back-pressure.
 * Returns () => the error code seen (e.g. 'ECONNRESET', 'EPIPE'), or null.
 */
function watchReset(socket) {
  let code = null;
  socket.on('error', (err) => {
    code ??= err.code ?? err.message;
  });
  return () => code;
}

/** Asserts that a flood sent something and that its connection was closed in order. */
function assertOrderlyClose({ sent, error }, resetCode, who) {
  assert.ok(sent > 0, `${who} sent nothing`);
  assert.equal(resetCode, null, `${who}'s connection was reset: tether stopped reading it and never read its close reply`);
  assert.equal(error, null, `${who}: a send failed (${error?.message})`);
}

/** Opens an SSE session from `localAddress`: { s (the stream), sid }. */
async function sseSession(port, path, localAddress) {
  const s = await openSse(port, path, { localAddress });
  assert.equal(s.status, 200, `SSE ${path} from ${localAddress}: ${s.rawHead}\n${s.body ?? ''}`);
  const { sid } = await readOpen(s);
  return { s, sid };
}

/** Opens a long-poll session from `localAddress` on a connection closed when this resolves: sid. */
async function pollSession(port, path, localAddress) {
  const res = await closedRequest(port, 'GET', `${path}?tether-transport=poll`, { localAddress });
  assert.equal(res.status, 200, `poll open ${path} from ${localAddress}: ${res.rawHead}\n${res.body}`);
  return res.json.session;
}

/** DELETE path?tether-session=sid from `localAddress`: 204. */
async function deleteSession(port, path, sid, localAddress = '127.0.0.1') {
  const res = await closedRequest(port, 'DELETE', `${path}?tether-session=${sid}`, { localAddress });
  assert.equal(res.status, 204, `DELETE ${path}: ${res.rawHead}\n${res.body}`);
}

/** The soft "Max open files" of a process. */
function softFdLimit(pid) {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  assert.ok(m, `no "Max open files" in /proc/${pid}/limits`);
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

// ---------------------------------------------------------------------------------------------

describe('connections', () => {
  test('max_connections 5: the 6th connection gets 503 from any address; once one closes a new one is served', { timeout: TEST_TIMEOUT }, async () => {
    await withTether((bp) => serverConf(bp, { main: 'max_connections 5;' }), async ({ port, stats }) => {
      await expectLimits(stats, limitsWith(5), 'the baseline');
      // The stats connection is one of the 5; four more from three addresses.
      const held = [
        await heldHttp(port, '127.0.0.1'),
        await heldHttp(port, '127.0.0.1'),
        await heldHttp(port, '127.0.0.2'),
        await heldHttp(port, '127.0.0.3'),
      ];
      await expectLimits(stats, limitsWith(5, { connections: 5, addresses: 4 }), '5 connections held');

      await assertRefused(port, '127.0.0.1', 503, 'too many connections', 'the 6th, from an address holding 2');
      await assertRefused(port, '127.0.0.4', 503, 'too many connections', 'the 6th, from a new address');
      // A WebSocket upgrade is refused the same way.
      const up = await upgradeRefused(`ws://127.0.0.1:${port}/ws/refused`, { localAddress: '127.0.0.5' });
      assertOneLineReason(up, 503, 'a WebSocket upgrade beyond max_connections');
      assert.equal(up.body, 'too many connections\n');
      const full = limitsWith(5, { connections: 5, addresses: 4, hit: { connections: 3 } });
      await expectLimits(stats, full, 'refusals take no place and are counted');
      // Refusals still lingering are bounded (64 at once; beyond that they are closed unanswered):
      // each refusal that ended must give its place back, so 100 in a row are all answered.
      for (let i = 0; i < 100; i++) {
        await assertRefused(port, `127.0.1.${i + 1}`, 503, 'too many connections', `refusal ${i + 1} of 100 in a row`);
      }
      full.hits_total.connections += 100;
      await expectLimits(stats, full, '100 more refusals');

      // The held connections are still served.
      for (const c of held) {
        const res = await c.request(`GET /ok HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
        assert.equal(res.status, 200);
      }

      await closeRaw(held.pop()); // 127.0.0.3's
      await expectLimits(stats, limitsWith(5, { connections: 4, addresses: 3, hit: { connections: 103 } }), 'one closed');
      held.push(await heldHttp(port, '127.0.0.4'));
      await expectLimits(stats, limitsWith(5, { connections: 5, addresses: 4, hit: { connections: 103 } }), 'a new one took its place');

      for (const c of held) await closeRaw(c);
      await expectLimits(stats, limitsWith(5, { hit: { connections: 103 } }), 'all gone: back to the baseline');
    });
  });

  test('max_connections_per_client 3: the 4th from 127.0.0.1 gets 429 while 127.0.0.2 is served; closing one makes room', { timeout: TEST_TIMEOUT }, async () => {
    await withTether((bp) => serverConf(bp, { main: 'max_connections_per_client 3;' }), async ({ port, stats, backend, tether }) => {
      // The default max_connections: (soft RLIMIT_NOFILE - 64) / 2.
      const soft = softFdLimit(tether.pid);
      const max = Number.isFinite(soft) ? Math.floor((soft - 64) / 2) : 10_000;
      await expectLimits(stats, limitsWith(max), 'the baseline (default max_connections)');

      // 127.0.0.1 holds 3 connections of each kind: a relay, an SSE stream, a plain keep-alive one.
      const relay = await echoRelay(`ws://127.0.0.1:${port}/ws/one`, { localAddress: '127.0.0.1' });
      const { s: sse, sid } = await sseSession(port, '/ws/sse', '127.0.0.1');
      const plain = await heldHttp(port, '127.0.0.1');
      await expectLimits(stats, limitsWith(max, { connections: 4, sessions: 1, addresses: 2 }), '127.0.0.1 holds 3');

      await assertRefused(port, '127.0.0.1', 429, 'too many connections from this client address', 'the 4th from 127.0.0.1');
      const up = await upgradeRefused(`ws://127.0.0.1:${port}/ws/two`, { localAddress: '127.0.0.1' });
      assertOneLineReason(up, 429, 'a WebSocket upgrade from 127.0.0.1');
      assert.equal(up.body, 'too many connections from this client address\n');
      assert.equal(backend.connections.filter((c) => c.path === '/ws/two').length, 0, 'the refused upgrade never reached the backend');

      // Another address is served meanwhile: a relay, and a plain request.
      const other = await echoRelay(`ws://127.0.0.1:${port}/ws/other`, { localAddress: '127.0.0.2' });
      const res = await closedRequest(port, 'GET', '/ok', { localAddress: '127.0.0.2' });
      assert.equal(res.status, 200);
      const busy = limitsWith(max, { connections: 5, sessions: 1, addresses: 3, hit: { connections_per_client: 2 } });
      await expectLimits(stats, busy, '3 from 127.0.0.1, 1 from 127.0.0.2, 2 refusals');

      // The three of 127.0.0.1 still work.
      relay.ws.send('still');
      assert.equal((await relay.next()).data.toString(), 'still');
      assert.equal((await plain.request(`GET /ok HTTP/1.1\r\nHost: x\r\n\r\n`)).status, 200);

      // Closing the plain one makes room for one more from 127.0.0.1.
      await closeRaw(plain);
      await expectLimits(stats, limitsWith(max, { connections: 4, sessions: 1, addresses: 3, hit: { connections_per_client: 2 } }), 'one of 127.0.0.1 closed');
      const again = await heldHttp(port, '127.0.0.1');
      await assertRefused(port, '127.0.0.1', 429, 'too many connections from this client address', 'full again');

      await closeRaw(again);
      await closeWs(relay);
      await closeWs(other);
      sse.destroy();
      await deleteSession(port, '/ws/sse', sid, '127.0.0.3');
      await expectLimits(stats, limitsWith(max, { hit: { connections_per_client: 3 } }), 'all gone: back to the baseline');
    });
  });

  test('slowloris: head trickled byte by byte gets 408 at client_header_timeout; one address holds at most max_connections_per_client while another is served', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { main: 'max_connections_per_client 3;', server: 'client_header_timeout 1s;' });
    await withTether(conf, async ({ port, stats }) => {
      // A head far longer than can be trickled within the timeout (4 KiB at one byte per 10 ms).
      const head = Buffer.from(`GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(4000)}\r\n\r\n`, 'latin1');
      const slow = [];
      for (let i = 0; i < 3; i++) {
        const conn = await RawHttp.connect(port, '127.0.0.1', { localAddress: '127.0.0.1' });
        slow.push({ conn, t: trickle(conn.socket, head), response: conn.readResponse({ timeoutMs: SLOW_GUARD_MS }) });
      }
      for (const x of slow) x.response.catch(() => {}); // awaited below
      // While they trickle: a 4th from the same address is refused, another address is served.
      await assertRefused(port, '127.0.0.1', 429, 'too many connections from this client address', 'a 4th while 3 trickle');
      const ok = await closedRequest(port, 'GET', '/ok', { localAddress: '127.0.0.2' });
      assert.equal(ok.status, 200, 'another address is served while 127.0.0.1 trickles');

      for (const [i, x] of slow.entries()) {
        const res = await x.response;
        x.t.stop();
        assertOneLineReason(res, 408, `trickler ${i}`);
        assert.equal(res.body, 'request not received in time\n');
        assert.ok(x.t.sent() < head.length, `trickler ${i} was answered before its head was complete (${x.t.sent()} of ${head.length} bytes)`);
        await x.conn.waitClose({ timeoutMs: SLOW_GUARD_MS }).catch(() => {}); // it may have sent bytes tether drops unread
        x.conn.destroy();
      }
      await expectLimits(stats, limitsWith(await maxConns(stats), { hit: { header_timeout: 3, connections_per_client: 1 } }), 'the tricklers are gone');
      // 127.0.0.1 is served again.
      assert.equal((await closedRequest(port, 'GET', '/ok', { localAddress: '127.0.0.1' })).status, 200);
    });
  });

  test('client_body_timeout: a body trickled byte by byte gets 408 "request body not received in time", counted apart from the head timeout', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { server: 'client_header_timeout 30s; client_body_timeout 500ms;' });
    await withTether(conf, async ({ port, stats }) => {
      const conn = await RawHttp.connect(port);
      const body = Buffer.alloc(4000, 'b');
      conn.write(`POST /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`);
      const t = trickle(conn.socket, body);
      const res = await conn.readResponse({ timeoutMs: SLOW_GUARD_MS });
      t.stop();
      assertOneLineReason(res, 408, 'a trickled body');
      assert.equal(res.body, 'request body not received in time\n');
      assert.ok(t.sent() < body.length, `answered before the body was complete (${t.sent()} of ${body.length} bytes)`);
      await conn.waitClose({ timeoutMs: SLOW_GUARD_MS }).catch(() => {});
      conn.destroy();

      // A body sent whole is served.
      const whole = await closedRequest(port, 'POST', '/ok', { body: 'x'.repeat(4000) });
      assert.equal(whole.status, 200);
      await expectLimits(stats, limitsWith(await maxConns(stats), { hit: { body_timeout: 1 } }), 'one body timeout, no head timeout');
    });
  });

  test('client_max_header_size: a head over it gets 431; the default is 16k; client_max_body_size: 413, counted as body_size', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => `
error_log stderr info;
server {
    listen 127.0.0.1:0;
    client_max_header_size 1k;
    client_max_body_size 1k;
    location = /ok { return 200 "ok"; }
    location = /tether/stats { tether_stats; }
}
server {
    listen 127.0.0.1:0;
    location = /ok { return 200 "ok"; }
}
`;
    await withTether(conf, async ({ tether, port, stats }) => {
      const small = tether.ports[0];
      const dflt = tether.ports[1];
      const req = (pad, extra = '') => `GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${'p'.repeat(pad)}\r\nConnection: close\r\n${extra}\r\n`;
      const send = async (p, data) => {
        const conn = await RawHttp.connect(p);
        try {
          const res = await conn.request(data);
          await conn.waitClose();
          return res;
        } finally {
          conn.destroy();
        }
      };

      assert.equal((await send(small, req(700))).status, 200, 'a head under 1k');
      const over = await send(small, req(2000));
      assertOneLineReason(over, 431, 'a 2 KiB head with client_max_header_size 1k');
      assert.equal((await send(dflt, req(2000))).status, 200, 'a 2 KiB head under the default 16k');
      assert.equal((await send(dflt, req(15_000))).status, 200, 'a 15 KB head under the default 16k');
      const overDefault = await send(dflt, req(17_000));
      assertOneLineReason(overDefault, 431, 'a 17 KB head over the default 16k');

      // client_max_body_size 1k: Content-Length and chunked bodies over it.
      const post = (len) => `POST /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n${'b'.repeat(len)}`;
      assert.equal((await send(small, post(1000))).status, 200, 'a body under 1k');
      assertOneLineReason(await send(small, post(2000)), 413, 'a 2000-byte body with client_max_body_size 1k');
      const chunk = 'c'.repeat(1500);
      const chunked = `POST /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
      assertOneLineReason(await send(small, chunked), 413, 'a 1500-byte chunked body with client_max_body_size 1k');

      await expectLimits(stats, limitsWith(await maxConns(stats), { hit: { header_size: 2, body_size: 2 } }), '2 heads and 2 bodies too large');
    });
  });
});

/** max_connections as the stats report it (for tests that leave it at its default). */
async function maxConns(stats) {
  return (await stats.json()).limits.max_connections;
}

// ---------------------------------------------------------------------------------------------

describe('sessions per client', () => {
  test('tether_max_sessions_per_client 3: SSE and poll opens beyond it get 429; another address is served; a DELETE frees one', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { main: 'tether_max_sessions_per_client 3;' });
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      const a = await sseSession(port, '/ws/sse-a', '127.0.0.1');
      const b = await sseSession(port, '/ws/sse-b', '127.0.0.1');
      const p = await pollSession(port, '/ws/poll-p', '127.0.0.1');
      await expectLimits(stats, limitsWith(max, { connections: 3, sessions: 3, addresses: 2 }), '3 sessions of 127.0.0.1 (2 of them SSE streams)');

      const refusedSse = await openSse(port, '/ws/sse-refused', { localAddress: '127.0.0.1', headers: { Connection: 'close' } });
      assertOneLineReason(refusedSse.response, 429, 'a 4th session (SSE)');
      assert.equal(refusedSse.body, 'too many sessions from this client address\n');
      refusedSse.destroy();
      const refusedPoll = await closedRequest(port, 'GET', '/ws/poll-refused?tether-transport=poll', { localAddress: '127.0.0.1' });
      assertOneLineReason(refusedPoll, 429, 'a 4th session (poll)');
      assert.equal(refusedPoll.body, 'too many sessions from this client address\n');
      assert.equal(backend.connections.filter((c) => /refused/.test(c.path)).length, 0, 'refused sessions never reach the backend');

      // Another address opens sessions meanwhile.
      const q = await pollSession(port, '/ws/poll-q', '127.0.0.2');
      const c = await sseSession(port, '/ws/sse-c', '127.0.0.2');
      const busy = { connections: 4, sessions: 5, addresses: 3, hit: { sessions_per_client: 2 } };
      await expectLimits(stats, limitsWith(max, busy), '3 sessions of 127.0.0.1, 2 of 127.0.0.2, 2 refused');

      // A DELETE frees a place: the session's place is given back before the 204.
      await deleteSession(port, '/ws/sse-a', a.sid);
      await a.s.waitEnd(SLOW_GUARD_MS); // its stream ends with the session
      const r = await pollSession(port, '/ws/poll-r', '127.0.0.1');
      const refusedAgain = await closedRequest(port, 'GET', '/ws/poll-refused?tether-transport=poll', { localAddress: '127.0.0.1' });
      assertOneLineReason(refusedAgain, 429, 'full again');

      // Everything closed: the baseline.
      await deleteSession(port, '/ws/sse-b', b.sid);
      await b.s.waitEnd(SLOW_GUARD_MS);
      await deleteSession(port, '/ws/sse-c', c.sid, '127.0.0.2');
      await c.s.waitEnd(SLOW_GUARD_MS);
      for (const sid of [p, r]) await deleteSession(port, '/ws/poll', sid);
      await deleteSession(port, '/ws/poll', q, '127.0.0.2');
      await expectLimits(stats, limitsWith(max, { hit: { sessions_per_client: 3 } }), 'all sessions gone');
      const st = await stats.json();
      assert.equal(st.sessions.active, 0);
    });
  });

  test('tether_max_sessions_per_client 1: an SSE reconnect (Last-Event-ID) resumes its session without a new place, while a new session is refused', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { main: 'tether_max_sessions_per_client 1;' });
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      const { s, sid } = await sseSession(port, '/ws/resume', '127.0.0.1');
      const conn = await backend.waitConnection((c) => c.path === '/ws/resume');
      conn.ws.send('m1');
      assertMessage(await s.nextEvent(), sid, 1, 'm1');
      s.destroy(); // the session lingers
      await expectLimits(stats, limitsWith(max, { sessions: 1, addresses: 2 }), 'the stream gone, its session lingering');

      const refused = await openSse(port, '/ws/new', { localAddress: '127.0.0.1', headers: { Connection: 'close' } });
      assertOneLineReason(refused.response, 429, 'a second session');
      refused.destroy();

      const again = await openSse(port, '/ws/resume', { localAddress: '127.0.0.1', lastEventId: `${sid}.1` });
      assert.equal(again.status, 200, `the reconnect: ${again.rawHead}\n${again.body ?? ''}`);
      conn.ws.send('m2');
      assertMessage(await again.nextEvent(), sid, 2, 'm2');
      await expectLimits(stats, limitsWith(max, { connections: 2, sessions: 1, addresses: 2, hit: { sessions_per_client: 1 } }), 'resumed: one session, one stream');

      await deleteSession(port, '/ws/resume', sid);
      await again.waitEnd(SLOW_GUARD_MS);
      again.destroy();
      await expectLimits(stats, limitsWith(max, { hit: { sessions_per_client: 1 } }), 'deleted');
    });
  });

  test('failed opens give their places back: 502s for relays, SSE and poll sessions use up no limit', { timeout: TEST_TIMEOUT }, async () => {
    const dead = await deadPort();
    const conf = (bp) => serverConf(bp, {
      main: 'max_connections_per_client 3; tether_max_sessions_per_client 3;',
      server: `location /dead/ { tether_pass ws://127.0.0.1:${dead}; tether_connect_timeout 5s; }`,
    });
    await withTether(conf, async ({ port, stats }) => {
      const max = await maxConns(stats);
      // Three times the limit of each kind from one address: every one gets the upstream's 502.
      for (let i = 0; i < 9; i++) {
        const up = await upgradeRefused(`ws://127.0.0.1:${port}/dead/ws${i}`, { localAddress: '127.0.0.1' });
        assertOneLineReason(up, 502, `relay ${i} to a dead upstream`);
        const sse = await openSse(port, `/dead/sse${i}`, { localAddress: '127.0.0.1', headers: { Connection: 'close' } });
        assertOneLineReason(sse.response, 502, `SSE session ${i} on a dead upstream`);
        sse.destroy();
        const poll = await closedRequest(port, 'GET', `/dead/poll${i}?tether-transport=poll`, { localAddress: '127.0.0.1' });
        assertOneLineReason(poll, 502, `poll session ${i} on a dead upstream`);
      }
      await expectLimits(stats, limitsWith(max), 'nothing held, nothing refused');
      assert.equal((await stats.json()).sessions.active, 0);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('messages and relays', () => {
  test('tether_max_message 1k: a WebSocket message over it gets 1009 (either way), a POST over it 413; each counted as message_size', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { location: 'tether_max_message 1k;' });
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      // Exactly 1k passes both ways.
      const ok = await openWs(`ws://127.0.0.1:${port}/ws/ok`);
      ok.ws.send('k'.repeat(1024));
      assert.equal((await ok.next()).data.length, 1024);

      // Client -> backend, too large: the client gets 1009, the backend a 1001.
      const up = await openWs(`ws://127.0.0.1:${port}/ws/up`);
      const upConn = await backend.waitConnection((c) => c.path === '/ws/up');
      up.ws.send('u'.repeat(1025));
      const upClose = await withTimeout(up.closed, SLOW_GUARD_MS, 'the client close');
      assert.equal(upClose.code, 1009, `the client's close: ${JSON.stringify(upClose)}`);
      assert.deepEqual(await backendClosed(upConn, SLOW_GUARD_MS), { code: 1001, reason: 'client protocol error' });
      assert.equal(upConn.messages.length, 0, 'nothing of it reached the backend');

      // Backend -> client, too large: the backend gets 1009, the client 1014.
      const down = await openWs(`ws://127.0.0.1:${port}/ws/down`);
      const downConn = await backend.waitConnection((c) => c.path === '/ws/down');
      downConn.ws.send('d'.repeat(1025));
      const downClose = await backendClosed(downConn, SLOW_GUARD_MS);
      assert.equal(downClose.code, 1009, `the backend's close: ${JSON.stringify(downClose)}`);
      assert.deepEqual(await withTimeout(down.closed, SLOW_GUARD_MS, 'the client close'), { code: 1014, reason: 'upstream protocol error' });
      assert.equal(down.queue.length, 0, 'nothing of it reached the client');

      // POST: 413 over 1k, 204 at 1k.
      const sid = await pollSession(port, '/ws/post', '127.0.0.1');
      const post = (seq, body) =>
        closedRequest(port, 'POST', `/ws/post?tether-session=${sid}&tether-seq=${seq}`, { body, headers: { 'Content-Type': 'text/plain' } });
      const tooLarge = await post(1, 'x'.repeat(1025));
      assertOneLineReason(tooLarge, 413, 'a POST over tether_max_message');
      assert.equal(tooLarge.body, 'message larger than tether_max_message\n');
      assert.equal((await post(1, 'x'.repeat(1024))).status, 204);
      await deleteSession(port, '/ws/post', sid);

      await closeWs(ok);
      await expectLimits(stats, limitsWith(max, { hit: { message_size: 3 } }), 'three messages too large');
      assert.equal((await stats.json()).connections.websocket, 0, 'no relay left');
    });
  });

  test('send_timeout: a WebSocket client that stops reading while the backend pushes is dropped; the backend gets 1001', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { server: 'send_timeout 500ms;' });
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      // A bystander relay on the same tether, reading normally, is unaffected.
      const bystander = await echoRelay(`ws://127.0.0.1:${port}/ws/bystander`);
      const client = await openWs(`ws://127.0.0.1:${port}/ws/slow-client`);
      const conn = await backend.waitConnection((c) => c.path === '/ws/slow-client');
      client.ws._socket.pause(); // reads nothing from now on
      const reset = watchReset(conn.ws._socket);
      const flooding = flood(conn.ws, Buffer.alloc(64 * 1024, 'f'));
      assert.deepEqual(await backendClosed(conn, SLOW_GUARD_MS), { code: 1001, reason: 'client went away' });
      assertOrderlyClose(await flooding, reset(), 'the backend');
      client.ws._socket.resume();
      await withTimeout(client.closed, SLOW_GUARD_MS, 'the dropped client to see its close');

      bystander.ws.send('alive?');
      assert.equal((await bystander.next()).data.toString(), 'alive?', 'the bystander relay still echoes');
      await closeWs(bystander);
      await expectLimits(stats, limitsWith(max, { hit: { send_timeout: 1 } }), 'one client dropped');
      assert.equal((await stats.json()).connections.websocket, 0, 'no relay left');
    });
  });

  test('send_timeout: a backend that stops reading while the client pushes is dropped; the client gets 1014', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { server: 'send_timeout 500ms;' });
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      const client = await openWs(`ws://127.0.0.1:${port}/ws/deaf-backend`);
      const conn = await backend.waitConnection((c) => c.path === '/ws/deaf-backend');
      conn.ws._socket.pause(); // the backend reads nothing from now on
      const reset = watchReset(client.ws._socket);
      const flooding = flood(client.ws, Buffer.alloc(64 * 1024, 'f'));
      const closed = await withTimeout(client.closed, SLOW_GUARD_MS, 'the client to get a close');
      assert.deepEqual(closed, { code: 1014, reason: 'upstream went away' });
      assertOrderlyClose(await flooding, reset(), 'the client');
      conn.ws._socket.resume();
      await backendClosed(conn, SLOW_GUARD_MS);
      await expectLimits(stats, limitsWith(max, { hit: { send_timeout: 1 } }), 'one backend dropped');
      assert.equal((await stats.json()).connections.websocket, 0, 'no relay left');
    });
  });

  test('send_timeout: an SSE client that stops reading is dropped; its session lingers and can be deleted', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { server: 'send_timeout 500ms;' });
    await withTether(conf, async ({ tether, port, stats, backend }) => {
      const max = await maxConns(stats);
      const { s, sid } = await sseSession(port, '/ws/slow-sse', '127.0.0.1');
      const conn = await backend.waitConnection((c) => c.path === '/ws/slow-sse');
      s.pause(); // reads nothing from now on
      const mark = tether.stderrLines.length;
      const reset = watchReset(conn.ws._socket);
      const flooding = flood(conn.ws, Buffer.alloc(64 * 1024, 's'));
      await tether.waitStderrFrom(mark, (l) => /SSE client took nothing for send_timeout/.test(l), 'the SSE send timeout', SLOW_GUARD_MS);
      s.resume();
      await s.waitEnd(SLOW_GUARD_MS);
      // The stream is gone, the session is not (it lingers for a reconnect).
      await expectLimits(stats, limitsWith(max, { sessions: 1, addresses: 2, hit: { send_timeout: 1 } }), 'the stream dropped, the session lingering');
      // The backend keeps pushing until the session's buffer (tether_buffer, 1m by default) is
      // full and tether stops reading it; then the DELETE's close must still reach its reply.
      await stats.waitJson((st) => st.buffer_full_pauses_total === 1, 'the session buffer to fill', SLOW_GUARD_MS);
      await deleteSession(port, '/ws/slow-sse', sid);
      assert.deepEqual(await backendClosed(conn, SLOW_GUARD_MS), { code: 1000, reason: 'closed by client' });
      assertOrderlyClose(await flooding, reset(), 'the backend');
      await expectLimits(stats, limitsWith(max, { hit: { send_timeout: 1 } }), 'the session deleted');
    });
  });

  test('send_timeout: an HTTP client that stops reading a large poll answer is dropped; the message is not lost', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { server: 'send_timeout 500ms;' });
    await withTether(conf, async ({ tether, port, stats, backend }) => {
      const max = await maxConns(stats);
      const sid = await pollSession(port, '/ws/big', '127.0.0.1');
      const conn = await backend.waitConnection((c) => c.path === '/ws/big');
      const big = 'B'.repeat(8 * 1024 * 1024); // far more than the socket buffers hold
      conn.ws.send(big);
      // A poll whose answer is never read.
      const slow = await RawHttp.connect(port);
      slow.socket.pause();
      const mark = tether.stderrLines.length;
      slow.write(`GET /ws/big?tether-session=${sid}&tether-ack=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      await tether.waitStderrFrom(mark, (l) => /client timed out reading the response/.test(l), 'the HTTP send timeout', SLOW_GUARD_MS);
      slow.destroy();
      // Not acknowledged, so not lost: a poll that reads gets it.
      const polled = await closedRequest(port, 'GET', `/ws/big?tether-session=${sid}&tether-ack=0`, { timeoutMs: SLOW_GUARD_MS });
      assert.equal(polled.status, 200, polled.rawHead);
      assert.equal(polled.json.messages.length, 1);
      assert.equal(polled.json.messages[0].seq, 1);
      assert.equal(polled.json.messages[0].text.length, big.length);
      await deleteSession(port, '/ws/big', sid);
      await expectLimits(stats, limitsWith(max, { hit: { send_timeout: 1 } }), 'one HTTP client dropped');
    });
  });

  test('send_timeout and tether_buffer toward a session backend that stops reading: POSTs get 503 once its bytes are queued, then it is dropped and the poll sees the close', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => serverConf(bp, { server: 'send_timeout 2s;', location: 'tether_buffer 100 64k;' });
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      const sid = await pollSession(port, '/ws/deaf', '127.0.0.1');
      const conn = await backend.waitConnection((c) => c.path === '/ws/deaf');
      conn.ws._socket.pause(); // the backend reads nothing from now on
      const body = 'p'.repeat(256 * 1024);
      const post = (seq) =>
        closedRequest(port, 'POST', `/ws/deaf?tether-session=${sid}&tether-seq=${seq}`, { body, headers: { 'Content-Type': 'text/plain' } });
      // 204s while the kernel's buffers take the messages, then one is queued in tether (over
      // 64k: the bound), and the next is refused: what tether holds for the backend is bounded.
      let seq = 1;
      let res;
      for (; seq <= 1000; seq++) {
        res = await post(seq);
        if (res.status !== 204) break;
      }
      assertOneLineReason(res, 503, `POST ${seq} to a backend that reads nothing`);
      assert.equal(res.headers['retry-after'], '1', res.rawHead);
      assert.ok(seq > 1, 'the first POST was refused');
      // The backend takes nothing for send_timeout: it is dropped, and a held poll wakes with
      // the close.
      const polled = await closedRequest(port, 'GET', `/ws/deaf?tether-session=${sid}&tether-ack=0`, { timeoutMs: SLOW_GUARD_MS });
      assert.equal(polled.status, 200, polled.rawHead);
      assert.deepEqual(polled.json, { messages: [], close: { code: 1006, reason: 'upstream connection lost' } });
      assertOneLineReason(await post(seq), 410, 'a retry after the backend was dropped');
      conn.ws._socket.resume();
      await backendClosed(conn, SLOW_GUARD_MS);
      // Its close was delivered to the poll: the session may have ended already (410).
      const del = await closedRequest(port, 'DELETE', `/ws/deaf?tether-session=${sid}`);
      assert.ok([204, 410].includes(del.status), del.rawHead);
      await expectLimits(stats, limitsWith(max, { hit: { send_timeout: 1 } }), 'the session backend dropped');
      const st = await stats.json();
      assert.equal(st.sessions.active, 0);
      assert.equal(st.sessions.closed_total.upstream_lost, 1, JSON.stringify(st.sessions.closed_total));
    });
  });

  test('tether_idle_timeout: an idle relay gets 1001 "idle timeout" on both sides; `off` keeps another one open; frames either way keep one open', { timeout: TEST_TIMEOUT }, async () => {
    const conf = (bp) => `
error_log stderr info;
tether_idle_timeout 300ms;
server {
    listen 127.0.0.1:0;
    location /idle/ { tether_pass ws://127.0.0.1:${bp}; }
    location /keep/ { tether_pass ws://127.0.0.1:${bp}; tether_idle_timeout off; }
    location = /tether/stats { tether_stats; }
}
`;
    await withTether(conf, async ({ port, stats, backend }) => {
      const max = await maxConns(stats);
      // Opened first, so it has been idle longer than the other when that one times out.
      const keep = await echoRelay(`ws://127.0.0.1:${port}/keep/x`);
      const idle = await echoRelay(`ws://127.0.0.1:${port}/idle/x`);
      const idleConn = await backend.waitConnection((c) => c.path === '/idle/x');
      assert.deepEqual(await withTimeout(idle.closed, SLOW_GUARD_MS, 'the idle close'), { code: 1001, reason: 'idle timeout' });
      assert.deepEqual(await backendClosed(idleConn, SLOW_GUARD_MS), { code: 1001, reason: 'idle timeout' });

      keep.ws.send('still here');
      assert.equal((await keep.next()).data.toString(), 'still here', 'the relay with tether_idle_timeout off is open');
      await expectLimits(stats, limitsWith(max, { connections: 2, addresses: 2, hit: { idle_timeout: 1 } }), 'one relay closed for idleness');

      // Frames either way keep a relay open: for more than three idle periods, a frame every
      // 50 ms (a message from the client, a ping from the client, a message from the backend,
      // a ping from the backend, in turn); then silence closes it.
      const busy = await echoRelay(`ws://127.0.0.1:${port}/idle/busy`);
      const busyConn = await backend.waitConnection((c) => c.path === '/idle/busy');
      let closedEarly = null;
      busy.closed.then((c) => {
        closedEarly = c;
      });
      for (let i = 0; i < 24; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50)); // pacing the traffic, not a wait for an event
        assert.equal(closedEarly, null, `the busy relay was closed after ${i} frames 50 ms apart: ${JSON.stringify(closedEarly)}`);
        switch (i % 4) {
          case 0:
            busy.ws.send(`c${i}`);
            assert.equal((await busy.next()).data.toString(), `c${i}`);
            break;
          case 1: {
            const pong = once(busy.ws, 'pong');
            busy.ws.ping(`p${i}`);
            await withTimeout(pong, SLOW_GUARD_MS, 'the pong');
            break;
          }
          case 2:
            busyConn.ws.send(`b${i}`);
            assert.equal((await busy.next()).data.toString(), `b${i}`);
            break;
          default: {
            const pong = once(busyConn.ws, 'pong');
            busyConn.ws.ping(`q${i}`);
            await withTimeout(pong, SLOW_GUARD_MS, 'the backend pong');
          }
        }
      }
      assert.deepEqual(await withTimeout(busy.closed, SLOW_GUARD_MS, 'the close once quiet'), { code: 1001, reason: 'idle timeout' });
      assert.deepEqual(await backendClosed(busyConn, SLOW_GUARD_MS), { code: 1001, reason: 'idle timeout' });

      await closeWs(keep);
      await expectLimits(stats, limitsWith(max, { hit: { idle_timeout: 2 } }), 'no relay left');
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('config of the limits directives', () => {
  test('valid values pass `tether -t`', async () => {
    const r = await checkConfig(`
max_connections 100;
max_connections_per_client 10;
tether_max_sessions_per_client 10;
client_max_header_size 1k;
client_body_timeout 5s;
tether_idle_timeout off;
server {
    listen 127.0.0.1:0;
    client_max_header_size 32k;
    client_body_timeout 500ms;
    tether_idle_timeout 10m;
    location /a/ { tether_pass ws://127.0.0.1:9; tether_idle_timeout off; }
    location /b/ { tether_pass ws://127.0.0.1:9; tether_idle_timeout 30s; }
}
`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /test is successful/);
  });

  test('bad values are errors with FILE:LINE', async () => {
    const srv = 'server { listen 127.0.0.1:0; }\n';
    const cases = [
      [`max_connections 0;\n${srv}`, 1, /invalid value "0" in "max_connections" directive, must be more than 0/],
      [`\n\nmax_connections_per_client 0;\n${srv}`, 3, /invalid value "0" in "max_connections_per_client" directive/],
      [`\ntether_max_sessions_per_client many;\n${srv}`, 2, /invalid value "many" in "tether_max_sessions_per_client" directive/],
      [`client_max_header_size 512;\n${srv}`, 1, /invalid value "512" in "client_max_header_size" directive, must be at least 1k/],
      [`client_body_timeout soon;\n${srv}`, 1, /invalid value "soon" in "client_body_timeout" directive/],
      ['server {\n    listen 127.0.0.1:0;\n    location /a/ { tether_pass ws://127.0.0.1:9; tether_idle_timeout never; }\n}\n', 3, /invalid value "never" in "tether_idle_timeout" directive/],
      ['server {\n    listen 127.0.0.1:0;\n    max_connections 5;\n}\n', 3, /"max_connections" directive is not allowed here/],
      ['server {\n    listen 127.0.0.1:0;\n    location /a/ { tether_max_sessions_per_client 5; }\n}\n', 3, /"tether_max_sessions_per_client" directive is not allowed here/],
      ['server {\n    listen 127.0.0.1:0;\n    location /a/ { client_body_timeout 5s; }\n}\n', 3, /"client_body_timeout" directive is not allowed here/],
    ];
    for (const [text, line, re] of cases) {
      const r = await checkConfig(text);
      assert.equal(r.code, 1, `expected failure for:\n${text}\n${r.stderr}`);
      assert.match(r.stderr, re, text);
      assert.match(r.stderr, new RegExp(`\\[emerg\\] .* in ${escapeRe(r.file)}:${line}\\n`), `the error names ${r.file}:${line}:\n${r.stderr}`);
    }
  });
});



