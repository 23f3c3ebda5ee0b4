// Resource safety: 10,000 sessions opened and closed through one tether, every way a session can
// begin and end, leave nothing behind. After a warm-up, the baseline is measured in a quiet
// tether: its open file descriptors (entries of /proc/PID/fd) and its RSS (VmRSS). Then the run,
// with bounded concurrency, a mix of
//   poll   open, DELETE                                         (ends: client)
//   poll   open, POST a message, poll its echo, DELETE          (ends: client)
//   poll   open, then abandoned                                 (ends: tether_session_linger)
//   SSE    open, read tether-open, DELETE, the stream ends      (ends: client)
//   SSE    open, read tether-open, drop the stream              (ends: tether_session_linger)
//   relay  open, one echo, close 1000
//   relay  open, one echo, drop the TCP connection (no close frame)
// and clients that leave at the worst moment, wherever tether is by then:
//   poll   open, a poll whose connection drops (held, or not yet read), DELETE  (ends: client)
//   poll   the open request's connection drops before the answer  (if opened: ends by linger)
//   SSE    the request's connection drops before tether-open       (if opened: ends: client)
//   relay  the upgrade's connection drops before the 101
// and once the stats show no session, no relay and no client connection left, and the backend
// has seen every connection close, the same measures: the fds must equal the baseline exactly,
// the RSS must stay near it, and the session counters must add up exactly.
//
// The stats are read over one keep-alive connection (statsConnection, from 127.0.0.254), open
// during both measurements: it is the one client connection (and one fd) the baseline has.
//
// Under AddressSanitizer RSS means nothing (freed memory is quarantined): only the RSS assertion
// is skipped there, with a message.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { describe, test } from 'node:test';
import { RawHttp, openWs, startNodeWsBackend, startTether, withTimeout } from './lib/harness.mjs';
import { LIMIT_NAMES, mapLimit, statsConnection } from './lib/ops.mjs';
import { assertFdLimit, isSanitized, openSse, parseJson, readOpen, rssKiB } from './lib/transports.mjs';

const SESSIONS = 10_000;
const CONCURRENCY = 150;
// The warm-up reaches the run's concurrency, so the allocator's high-water mark is part of the
// baseline.
const WARMUP = 2 * CONCURRENCY;
// What may stay resident: allocator slack, and the tombstones of ended sessions (their ids,
// remembered tether-side for 120 s so that a late request gets 410 / 204, about 250 bytes each:
// ~2 MiB for the ~7,000 sessions of this run). Relays alone leave RSS flat.
const RSS_SLACK_KIB = 8 * 1024;
const QUIET_TIMEOUT_MS = 30_000;

const KINDS = [
  'poll-delete', 'poll-echo', 'poll-abandon', 'sse-delete', 'sse-drop', 'ws-close', 'ws-drop',
  'poll-held-drop', 'poll-open-drop', 'sse-early-drop', 'ws-early-drop',
];

/**
 * Connects, writes `head` and drops the connection at once (FIN; nothing unread on our side):
 * a client that leaves before the answer. Resolves once the socket is closed.
 */
async function sendAndDrop(port, head) {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {}); // tether may answer into a closed socket
  await once(socket, 'connect');
  socket.write(head);
  const closed = once(socket, 'close');
  socket.destroy();
  await closed;
}

/** Open fds of process `pid`. */
function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** The fds of `pid` as "fd -> target" lines (for a failure message). */
function fdList(pid) {
  return fs
    .readdirSync(`/proc/${pid}/fd`)
    .map((fd) => {
      try {
        return `${fd} -> ${fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
      } catch {
        return `${fd} (gone)`;
      }
    })
    .join('\n');
}

/**
 * One keep-alive HTTP connection per worker, for polls, POSTs and DELETEs (reconnecting if
 * tether closed it). Responses: RawHttp's, plus .json for a JSON body.
 */
class KeepAlive {
  constructor(port) {
    this.port = port;
    this.conn = null;
  }

  async request(method, target, { body, headers = {} } = {}) {
    if (!this.conn || this.conn.isClosed) {
      this.conn?.destroy();
      this.conn = await RawHttp.connect(this.port);
    }
    const bodyBuf = body === undefined ? null : Buffer.from(body, 'utf8');
    let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    if (bodyBuf) head += `Content-Length: ${bodyBuf.length}\r\n`;
    const res = await this.conn.request(bodyBuf ? Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), bodyBuf]) : `${head}\r\n`, { method });
    if (res.status === 200 && /^application\/json\b/i.test(String(res.headers['content-type']))) {
      res.json = parseJson(res.body, `the answer to ${method} ${target}`);
    }
    return res;
  }

  async close() {
    if (!this.conn) return;
    const closed = once(this.conn.socket, 'close');
    this.conn.destroy();
    await closed;
    this.conn = null;
  }
}

/** Runs session number `i` of kind KINDS[i % KINDS.length]; `http` is the worker's KeepAlive. */
async function runSession(port, http, i) {
  const kind = KINDS[i % KINDS.length];
  const path = `/app/${kind}/${i}`;
  const expect = (res, status, what) => assert.equal(res.status, status, `${kind} #${i} ${what}: ${res.rawHead}\n${res.body}`);
  switch (kind) {
    case 'poll-delete':
    case 'poll-echo':
    case 'poll-abandon': {
      const open = await http.request('GET', `${path}?tether-transport=poll`);
      expect(open, 200, 'poll open');
      const sid = open.json.session;
      if (kind === 'poll-echo') {
        const text = `m${i}`;
        expect(await http.request('POST', `${path}?tether-session=${sid}&tether-seq=1`, { body: text, headers: { 'Content-Type': 'text/plain' } }), 204, 'POST');
        const polled = await http.request('GET', `${path}?tether-session=${sid}&tether-ack=0`);
        expect(polled, 200, 'poll');
        assert.deepEqual(polled.json.messages, [{ seq: 1, text }], `${kind} #${i}: the echo`);
      }
      if (kind !== 'poll-abandon') expect(await http.request('DELETE', `${path}?tether-session=${sid}`), 204, 'DELETE');
      return;
    }
    case 'poll-held-drop': {
      const open = await http.request('GET', `${path}?tether-transport=poll`);
      expect(open, 200, 'poll open');
      const sid = open.json.session;
      await sendAndDrop(port, `GET ${path}?tether-session=${sid}&tether-ack=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      expect(await http.request('DELETE', `${path}?tether-session=${sid}`), 204, 'DELETE');
      return;
    }
    case 'poll-open-drop':
      await sendAndDrop(port, `GET ${path}?tether-transport=poll HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      return;
    case 'sse-early-drop':
      await sendAndDrop(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
      return;
    case 'ws-early-drop':
      await sendAndDrop(
        port,
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      return;
    case 'sse-delete':
    case 'sse-drop': {
      const s = await openSse(port, path);
      assert.equal(s.status, 200, `${kind} #${i}: ${s.rawHead}`);
      const { sid } = await readOpen(s);
      if (kind === 'sse-drop') {
        s.destroy();
        return;
      }
      expect(await http.request('DELETE', `${path}?tether-session=${sid}`), 204, 'DELETE');
      await s.waitEnd();
      s.destroy();
      return;
    }
    case 'ws-close':
    case 'ws-drop': {
      const c = await openWs(`ws://127.0.0.1:${port}${path}`);
      c.ws.send(`w${i}`);
      assert.equal((await c.next()).data.toString(), `w${i}`, `${kind} #${i}: the echo`);
      if (kind === 'ws-drop') {
        c.ws.terminate();
      } else {
        c.ws.close(1000, 'bye');
      }
      await withTimeout(c.closed, QUIET_TIMEOUT_MS, `${kind} #${i} to close`);
      return;
    }
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

/** Runs sessions [from, to) with CONCURRENCY workers, each with its own keep-alive connection. */
async function runSessions(port, from, to) {
  const https = Array.from({ length: CONCURRENCY }, () => new KeepAlive(port));
  const ids = Array.from({ length: to - from }, (_, k) => from + k);
  let next = 0;
  let failed = false;
  try {
    await mapLimit(https, CONCURRENCY, async (http) => {
      try {
        while (!failed && next < ids.length) await runSession(port, http, ids[next++]);
      } catch (err) {
        failed = true; // the other workers stop too
        throw err;
      }
    });
  } finally {
    await Promise.all(https.map((h) => h.close()));
  }
}

/** How many sessions of `kind` are among [0, n). */
function countKind(kind, n) {
  const k = KINDS.indexOf(kind);
  return Math.floor(n / KINDS.length) + (k < n % KINDS.length ? 1 : 0);
}

describe('resources', () => {
  test(`${SESSIONS} sessions (poll, SSE, WebSocket; closed, deleted, dropped, abandoned) leave fds exactly and RSS nearly as they were`, { timeout: 280_000 }, async (t) => {
    const backend = await startNodeWsBackend();
    let opened = 0;
    let closed = 0;
    backend.onConnection((conn) => {
      opened++;
      conn.closed.then(() => closed++);
    });
    const tether = await startTether(`
error_log stderr notice;
tether_max_sessions_per_client 100000;  # the run's lingering sessions are many; no limit is its subject
max_connections_per_client 100000;
server {
    listen 127.0.0.1:0;
    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; tether_session_linger 200ms; }
    location = /tether/stats { tether_stats; }
}
`);
    let stats;
    try {
      assertFdLimit(tether.pid, 4 * CONCURRENCY + 200);
      stats = await statsConnection(tether.port);
      const port = tether.port;

      /** Awaits a quiet tether: nothing open but the stats connection, every upstream closed. */
      const quiet = async (what) => {
        const st = await stats.waitJson(
          (s) =>
            s.sessions.active === 0 &&
            s.connections.websocket === 0 &&
            s.connections.sse === 0 &&
            s.limits.client_connections === 1 &&
            s.limits.client_sessions === 0 &&
            s.limits.client_addresses === 1 &&
            closed === opened,
          `${what}: no session, relay or client connection left (backend connections ${opened} opened, ${closed} closed)`,
          QUIET_TIMEOUT_MS,
        );
        return st;
      };

      const t0 = Date.now();
      await runSessions(port, 0, WARMUP);
      await quiet('after the warm-up');
      const base = { fds: fdCount(tether.pid), rss: rssKiB(tether.pid) };
      const baseFdList = fdList(tether.pid);

      const t1 = Date.now();
      await runSessions(port, WARMUP, WARMUP + SESSIONS);
      const t2 = Date.now();
      const st = await quiet(`after ${SESSIONS} sessions`);
      const now = { fds: fdCount(tether.pid), rss: rssKiB(tether.pid) };
      t.diagnostic(
        `warm-up ${WARMUP} sessions ${t1 - t0} ms; ${SESSIONS} sessions in ${t2 - t1} ms; settled in ${Date.now() - t2} ms; ` +
          `fds ${base.fds} -> ${now.fds}; RSS ${base.rss} KiB -> ${now.rss} KiB (${now.rss - base.rss >= 0 ? '+' : ''}${now.rss - base.rss} KiB)`,
      );

      assert.equal(now.fds, base.fds, `tether's open fds after ${SESSIONS} sessions (the stats connection is open in both)\n--- before ---\n${baseFdList}\n--- after ---\n${fdList(tether.pid)}`);
      if (isSanitized(tether.pid)) {
        t.diagnostic('RSS not asserted: tether runs under AddressSanitizer, whose quarantine keeps freed memory resident');
      } else {
        assert.ok(now.rss <= base.rss + RSS_SLACK_KIB, `RSS ${now.rss} KiB after ${SESSIONS} sessions, baseline ${base.rss} KiB: more than ${RSS_SLACK_KIB} KiB above it`);
      }

      // The bookkeeping adds up: every session opened was closed, for its reason. Exactly for the
      // clients that stay to the end; the early drops may or may not have opened a session
      // (poll-open-drop: then it lingers out; sse-early-drop: then the client left).
      const total = WARMUP + SESSIONS;
      const n = (kind) => countKind(kind, total);
      const sure = {
        client: n('poll-delete') + n('poll-echo') + n('poll-held-drop') + n('sse-delete'),
        linger: n('poll-abandon') + n('sse-drop'),
      };
      const sessionsOpened = sure.client + sure.linger;
      const closedTotal = st.sessions.closed_total;
      const extraClient = closedTotal.client - sure.client;
      const extraLinger = closedTotal.linger - sure.linger;
      assert.deepEqual(
        { ...closedTotal, client: 0, linger: 0 },
        { backend: 0, client: 0, linger: 0, slow_client: 0, upstream_lost: 0, shutdown: 0 },
        'sessions closed by other reasons',
      );
      assert.ok(extraClient >= 0 && extraClient <= n('sse-early-drop'), `sessions closed by the client: ${closedTotal.client}, expected ${sure.client} + up to ${n('sse-early-drop')} early drops`);
      assert.ok(extraLinger >= 0 && extraLinger <= n('poll-open-drop'), `sessions lingered out: ${closedTotal.linger}, expected ${sure.linger} + up to ${n('poll-open-drop')} early drops`);
      assert.equal(st.sessions.opened_total, sessionsOpened + extraClient + extraLinger, 'sessions opened = sessions closed');
      assert.equal(st.sessions.expired_total, closedTotal.linger, 'sessions expired = sessions lingered out');
      t.diagnostic(`sessions opened ${st.sessions.opened_total}, of them by clients that dropped early: ${extraClient} SSE, ${extraLinger} poll`);
      const earlyRelays = opened - st.sessions.opened_total - n('ws-close') - n('ws-drop');
      assert.ok(earlyRelays >= 0 && earlyRelays <= n('ws-early-drop'), `backend connections ${opened}: one per session and per relay (+ up to ${n('ws-early-drop')} early drops)`);
      t.diagnostic(`backend connections ${opened}, of them for relays whose client dropped before the 101: ${earlyRelays}`);
      assert.equal(st.messages.poll.in, n('poll-echo'), 'poll messages in');
      assert.equal(st.messages.poll.out, n('poll-echo'), 'poll messages out');
      assert.equal(st.messages.websocket.in, n('ws-close') + n('ws-drop'), 'websocket messages in');
      assert.equal(st.messages.websocket.out, n('ws-close') + n('ws-drop'), 'websocket messages out');
      assert.deepEqual(st.limits.hits_total, Object.fromEntries(LIMIT_NAMES.map((l) => [l, 0])), 'no limit was hit');
      assert.equal(st.connections.poll_waiting, 0);
    } finally {
      stats?.close();
      try {
        await tether.stop();
      } finally {
        await backend.close();
      }
    }
  });
});
