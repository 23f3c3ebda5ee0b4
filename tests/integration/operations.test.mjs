// Operations: the stats endpoint (JSON and Prometheus text) with figures checked against what
// each test did, allow/deny, reloads (SIGHUP and `tether -s reload`) under live traffic, bad
// reloads, the access log and log rotation (SIGUSR1, `-s reopen`), graceful and fast stops
// (SIGQUIT, SIGTERM, `-s quit`), the pid file, and the config errors of these directives.
//
// Real peers only: Node `ws` backends and clients, raw-socket SSE clients, raw HTTP and fetch
// for polls and sends. Every wait is on an event: tether's log lines (stderr, or a log file
// followed with fs.watch), socket and close events, process exits.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import {
  RawHttp,
  assertOneLineReason,
  checkConfig,
  openWs,
  runTether,
  settleAll,
  startNodeWsBackend,
  startTether,
  withTimeout,
} from './lib/harness.mjs';
import { closedRequest, followFile, getPrometheus, getStats, mapLimit, startTetherLoggingTo, tryConnect } from './lib/ops.mjs';
import { parseExposition, sampleValue } from './lib/prometheus.mjs';
import {
  assertMessage,
  assertSseHead,
  backendClosed,
  openSse,
  parseJson,
  poll,
  pollJson,
  readOpen,
  send,
  startPoll,
  waitBackendMessages,
} from './lib/transports.mjs';

const TEST_TIMEOUT = 30_000;
const run = randomBytes(3).toString('hex');
const tag = (name) => `${name}-${run}-${randomBytes(3).toString('hex')}`;
const bytes = (s) => (Buffer.isBuffer(s) ? s.length : Buffer.byteLength(s, 'utf8'));
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A temporary directory (pid files, logs), removed by the returned function. */
function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-ops-'));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Awaits tether's "started" line: from then on its signal handlers are installed. */
function started(tether) {
  return tether.waitStderr((l) => / tether \S+ started$/.test(l), 'the "tether … started" line');
}

/** Sends `signal` to tether and awaits the first log line from then on matching `re`. */
async function signalAndWait(tether, signal, re, what) {
  const mark = tether.stderrLines.length;
  process.kill(tether.pid, signal);
  return tether.waitStderrFrom(mark, (l) => re.test(l), what);
}

/** "listening on ADDR:PORT" lines logged from index `from` on, as [{ addr, port }]. */
function listeningLines(tether, from = 0) {
  return tether.stderrLines
    .slice(from)
    .map((l) => /listening on (\S+):(\d+)$/.exec(l))
    .filter(Boolean)
    .map((m) => ({ addr: m[1], port: Number(m[2]) }));
}

/** The version `tether -v` prints. */
async function tetherVersion() {
  const r = await runTether(['-v']);
  assert.equal(r.code, 0, `tether -v: ${r.stderr}`);
  const m = /tether version (\S+)/.exec(r.stdout);
  assert.ok(m, `tether -v printed ${JSON.stringify(r.stdout)}`);
  return m[1];
}

// -------------------------------------------------------------------------------------------
// Stats: the JSON shape and the Prometheus families the brief names.

const CLOSE_REASONS = ['backend', 'client', 'linger', 'slow_client', 'upstream_lost', 'shutdown'];
const CONN_KINDS = ['websocket', 'sse', 'poll_waiting', 'other'];
const MSG_KINDS = ['websocket', 'sse', 'poll'];
const LIMITS = [
  'connections', 'connections_per_client', 'sessions_per_client', 'header_size', 'body_size', 'message_size',
  'header_timeout', 'body_timeout', 'send_timeout', 'idle_timeout',
];

const FAMILIES = {
  tether_info: 'gauge',
  tether_uptime_seconds: 'gauge',
  tether_connections: 'gauge',
  tether_connections_accepted_total: 'counter',
  tether_sessions_active: 'gauge',
  tether_sessions_opened_total: 'counter',
  tether_sessions_resumed_total: 'counter',
  tether_sessions_expired_total: 'counter',
  tether_sessions_closed_total: 'counter',
  tether_messages_total: 'counter',
  tether_message_bytes_total: 'counter',
  tether_buffer_full_pauses_total: 'counter',
  tether_client_connections: 'gauge',
  tether_max_connections: 'gauge',
  tether_client_addresses: 'gauge',
  tether_limit_hits_total: 'counter',
  tether_message_rate: 'gauge',
  tether_upstream_server_up: 'gauge',
  tether_upstream_server_active: 'gauge',
  tether_upstream_server_picks_total: 'counter',
  tether_upstream_connect_failures_total: 'counter',
  tether_upstream_handshake_seconds: 'summary',
};
const STICKY_FAMILIES = {
  tether_stick_table_entries: 'gauge',
  tether_stick_table_capacity: 'gauge',
  tether_stick_table_hits_total: 'counter',
  tether_stick_table_misses_total: 'counter',
  tether_stick_table_evictions_total: 'counter',
};

/** Asserts the documented structure of a stats JSON object (keys exactly, types). */
function assertStatsShape(st) {
  const keys = (o) => Object.keys(o).sort();
  const ints = (o, names, what) => {
    assert.deepEqual(keys(o), [...names].sort(), `${what} keys`);
    for (const n of names) assert.ok(Number.isInteger(o[n]) && o[n] >= 0, `${what}.${n} = ${o[n]} is not a count`);
  };
  assert.deepEqual(
    keys(st),
    ['buffer_full_pauses_total', 'connections', 'limits', 'messages', 'pid', 'rates', 'sessions', 'upstreams', 'uptime_seconds', 'version'],
    'top-level keys of the stats',
  );
  assert.equal(typeof st.version, 'string');
  assert.ok(Number.isInteger(st.pid));
  assert.ok(typeof st.uptime_seconds === 'number' && st.uptime_seconds >= 0, `uptime_seconds ${st.uptime_seconds}`);
  ints(st.connections, [...CONN_KINDS, 'accepted_total'], 'connections');
  assert.deepEqual(keys(st.sessions), ['active', 'closed_total', 'expired_total', 'opened_total', 'resumed_total'], 'sessions keys');
  ints({ ...st.sessions, closed_total: 0 }, ['active', 'closed_total', 'expired_total', 'opened_total', 'resumed_total'], 'sessions');
  ints(st.sessions.closed_total, CLOSE_REASONS, 'sessions.closed_total');
  assert.deepEqual(keys(st.messages), [...MSG_KINDS].sort(), 'messages keys');
  for (const k of MSG_KINDS) ints(st.messages[k], ['in', 'out', 'in_bytes', 'out_bytes'], `messages.${k}`);
  assert.ok(Number.isInteger(st.buffer_full_pauses_total) && st.buffer_full_pauses_total >= 0);
  ints({ ...st.limits, hits_total: 0 }, ['client_connections', 'max_connections', 'client_sessions', 'client_addresses', 'hits_total'], 'limits');
  ints(st.limits.hits_total, LIMITS, 'limits.hits_total');
  assert.deepEqual(keys(st.rates), ['messages_per_second_10s', 'messages_per_second_1m'], 'rates keys');
  for (const v of Object.values(st.rates)) assert.ok(typeof v === 'number' && v >= 0, `a rate of ${v}`);
  for (const [name, up] of Object.entries(st.upstreams)) {
    const expected = ['balance', 'servers', ...(up.sticky ? ['sticky'] : [])].sort();
    assert.deepEqual(keys(up), expected, `upstreams.${name} keys`);
    assert.match(up.balance, /^(round_robin|least_conn|hash)$/);
    assert.ok(Array.isArray(up.servers) && up.servers.length > 0, `upstreams.${name}.servers`);
    for (const s of up.servers) {
      assert.deepEqual(
        keys(s),
        ['active', 'connect_failures_total', 'handshake_ms', 'picks_total', 'reason', 'server', 'state'],
        `upstreams.${name}.servers[] keys`,
      );
      assert.match(s.server, /^\S+:\d+$/);
      assert.match(s.state, /^(up|failed|down)$/);
      assert.equal(typeof s.reason, 'string');
      ints({ a: s.active, p: s.picks_total, f: s.connect_failures_total }, ['a', 'p', 'f'], `upstreams.${name} ${s.server}`);
      assert.deepEqual(keys(s.handshake_ms), ['count', 'p50', 'p90', 'p99'], 'handshake_ms keys');
      assert.ok(Number.isInteger(s.handshake_ms.count) && s.handshake_ms.count >= 0);
      const { p50, p90, p99 } = s.handshake_ms;
      for (const q of [p50, p90, p99]) assert.ok(typeof q === 'number' && q >= 0, `a handshake quantile of ${q}`);
      assert.ok(p50 <= p90 && p90 <= p99, `handshake quantiles out of order: ${JSON.stringify(s.handshake_ms)}`);
    }
    if (up.sticky) {
      ints(up.sticky, ['entries', 'capacity', 'hits_total', 'misses_total', 'evictions_total', 'expired_total'], `upstreams.${name}.sticky`);
    }
  }
}

const near = (a, b) => Math.abs(a - b) <= 1e-9 + 1e-5 * Math.max(Math.abs(a), Math.abs(b));

/**
 * Checks the Prometheus text line by line (lib/prometheus.mjs), then that its figures equal
 * the JSON `st` taken just before on a closed connection (so the scrape's own connection is the
 * one more accepted, and "other" is the scrape itself in both).
 */
function assertPrometheusMatches(text, st) {
  const p = parseExposition(text, { prefix: 'tether_' });
  const sticky = Object.values(st.upstreams).some((u) => u.sticky);
  for (const [name, type] of Object.entries({ ...FAMILIES, ...(sticky ? STICKY_FAMILIES : {}) })) {
    const f = p.families.get(name);
    assert.ok(f, `no family ${name} in the exposition`);
    assert.equal(f.type, type, `# TYPE of ${name}`);
    assert.ok(f.help && f.help.trim(), `# HELP of ${name} is empty`);
    assert.ok(f.samples.length > 0, `family ${name} has no sample`);
  }
  const v = (name, labels) => sampleValue(p, name, labels);
  assert.equal(v('tether_info', { version: st.version }), 1, 'tether_info{version}');
  assert.ok(v('tether_uptime_seconds') >= st.uptime_seconds, 'uptime went backwards');
  for (const t of CONN_KINDS) assert.equal(v('tether_connections', { transport: t }), st.connections[t], `tether_connections{transport="${t}"}`);
  assert.equal(v('tether_connections_accepted_total'), st.connections.accepted_total + 1, 'accepted_total: the JSON request, then this one');
  assert.equal(v('tether_sessions_active'), st.sessions.active);
  assert.equal(v('tether_max_connections'), st.limits.max_connections, 'tether_max_connections');
  for (const l of LIMITS) assert.equal(v('tether_limit_hits_total', { limit: l }), st.limits.hits_total[l], `tether_limit_hits_total{limit="${l}"}`);
  assert.equal(v('tether_sessions_opened_total'), st.sessions.opened_total);
  assert.equal(v('tether_sessions_resumed_total'), st.sessions.resumed_total);
  assert.equal(v('tether_sessions_expired_total'), st.sessions.expired_total);
  for (const r of CLOSE_REASONS) assert.equal(v('tether_sessions_closed_total', { reason: r }), st.sessions.closed_total[r], `closed_total{reason="${r}"}`);
  for (const t of MSG_KINDS) {
    for (const d of ['in', 'out']) {
      assert.equal(v('tether_messages_total', { transport: t, direction: d }), st.messages[t][d], `tether_messages_total{${t},${d}}`);
      assert.equal(v('tether_message_bytes_total', { transport: t, direction: d }), st.messages[t][`${d}_bytes`], `tether_message_bytes_total{${t},${d}}`);
    }
  }
  assert.equal(v('tether_buffer_full_pauses_total'), st.buffer_full_pauses_total);
  for (const w of ['10s', '1m']) {
    const r = v('tether_message_rate', { window: w });
    assert.ok(r >= 0, `tether_message_rate{window="${w}"} = ${r}`);
  }
  // Upstreams: the same set of (upstream, server), the same figures.
  const promPairs = p.families.get('tether_upstream_server_up').samples.map((s) => `${s.labels.upstream} ${s.labels.server}`).sort();
  const jsonPairs = Object.entries(st.upstreams)
    .flatMap(([name, up]) => up.servers.map((s) => `${name} ${s.server}`))
    .sort();
  assert.deepEqual(promPairs, jsonPairs, 'the servers of tether_upstream_server_up');
  for (const [name, up] of Object.entries(st.upstreams)) {
    for (const s of up.servers) {
      const l = { upstream: name, server: s.server };
      assert.equal(v('tether_upstream_server_up', l), s.state === 'up' ? 1 : 0, `server_up ${name} ${s.server}`);
      assert.equal(v('tether_upstream_server_active', l), s.active, `server_active ${name} ${s.server}`);
      assert.equal(v('tether_upstream_server_picks_total', l), s.picks_total, `picks_total ${name} ${s.server}`);
      assert.equal(v('tether_upstream_connect_failures_total', l), s.connect_failures_total, `connect_failures_total ${name} ${s.server}`);
      assert.equal(v('tether_upstream_handshake_seconds_count', l), s.handshake_ms.count, `handshake count ${name} ${s.server}`);
      const sumS = v('tether_upstream_handshake_seconds_sum', l);
      assert.ok(sumS >= 0, `handshake _sum ${sumS}`);
      for (const [q, k] of [['0.5', 'p50'], ['0.9', 'p90'], ['0.99', 'p99']]) {
        const got = v('tether_upstream_handshake_seconds', { ...l, quantile: q });
        if (s.handshake_ms.count === 0) {
          assert.ok(Number.isNaN(got) || got === 0, `quantile ${q} with no sample: ${got}`);
        } else {
          assert.ok(near(got, s.handshake_ms[k] / 1000), `quantile ${q} of ${name} ${s.server}: ${got} s, JSON ${s.handshake_ms[k]} ms`);
        }
      }
    }
    const stickySamples = Object.keys(STICKY_FAMILIES).flatMap((f) => (p.families.get(f)?.samples ?? []).filter((s) => s.labels.upstream === name));
    if (up.sticky) {
      const l = { upstream: name };
      assert.equal(v('tether_stick_table_entries', l), up.sticky.entries);
      assert.equal(v('tether_stick_table_capacity', l), up.sticky.capacity);
      assert.equal(v('tether_stick_table_hits_total', l), up.sticky.hits_total);
      assert.equal(v('tether_stick_table_misses_total', l), up.sticky.misses_total);
      assert.equal(v('tether_stick_table_evictions_total', l), up.sticky.evictions_total);
    } else {
      assert.deepEqual(stickySamples, [], `stick table samples for ${name}, which has no sticky`);
    }
  }
  return p;
}

// -------------------------------------------------------------------------------------------

describe('the exposition checker itself', () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 3\n# HELP s S.\n# TYPE s summary\ns{quantile="0.5"} NaN\ns_sum 0\ns_count 0\n';

  test('accepts well-formed text and rejects each kind of violation', () => {
    const p = parseExposition(ok, { prefix: '' });
    assert.equal(sampleValue(p, 'a_total', { x: '1' }), 3);
    assert.ok(Number.isNaN(sampleValue(p, 's', { quantile: '0.5' })));
    const bad = {
      'no final newline': ok.slice(0, -1),
      'sample before TYPE': 'a_total 1\n# HELP a_total A.\n# TYPE a_total counter\n',
      'TYPE twice': '# HELP a_total A.\n# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n',
      'no HELP': '# TYPE a_total counter\na_total 1\n',
      'counter without _total': '# HELP a A.\n# TYPE a counter\na 1\n',
      'bad label escape': '# HELP g G.\n# TYPE g gauge\ng{x="a\\tb"} 1\n',
      'bad label name': '# HELP g G.\n# TYPE g gauge\ng{1x="a"} 1\n',
      'bad value': '# HELP g G.\n# TYPE g gauge\ng 1,5\n',
      'duplicate series': '# HELP g G.\n# TYPE g gauge\ng{a="1",b="2"} 1\ng{b="2",a="1"} 2\n',
      'interleaved families': '# HELP g G.\n# TYPE g gauge\n# HELP h H.\n# TYPE h gauge\ng{a="1"} 1\nh 1\ng{a="2"} 1\n',
      'undeclared sample': '# HELP g G.\n# TYPE g gauge\ng 1\nzz 2\n',
      'summary without _count': '# HELP s S.\n# TYPE s summary\ns{quantile="0.5"} 1\ns_sum 1\n',
      'quantile out of range': '# HELP s S.\n# TYPE s summary\ns{quantile="1.5"} 1\ns_sum 1\ns_count 1\n',
      'negative counter': '# HELP a_total A.\n# TYPE a_total counter\na_total -1\n',
    };
    for (const [what, text] of Object.entries(bad)) {
      assert.throws(() => parseExposition(text), Error, `the checker accepted: ${what}`);
    }
    assert.throws(() => parseExposition(ok, { prefix: 'tether_' }), /does not start with tether_/);
    // +Inf, -Inf, exponents, a timestamp and escaped label values are fine.
    const p2 = parseExposition('# HELP g G \\\\ \\n.\n# TYPE g gauge\ng{a="x\\"y\\\\z\\n"} +Inf\ng{a="2"} -1.5e-3 1700000000000\n');
    assert.equal(sampleValue(p2, 'g', { a: 'x"y\\z\n' }), Infinity);
    assert.equal(sampleValue(p2, 'g', { a: '2' }), -0.0015);
  });
});

describe('stats', () => {
  let backend; // Node ws, no echo: the tests make it speak
  let tether;
  let version;
  let accepted = 0; // TCP connections the tests opened to `tether`
  let upstreamName;

  before(async () => {
    version = await tetherVersion();
    backend = await startNodeWsBackend({ echo: false });
    upstreamName = `127.0.0.1:${backend.port}`;
    const pass = `tether_pass ws://127.0.0.1:${backend.port};`;
    tether = await startTether(`
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /app/ { ${pass} tether_session_linger 30s; tether_poll_timeout 60s; }
    location /short/ { ${pass} tether_session_linger 200ms; }
    location = /tether/stats { tether_stats; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close()]);
  });

  const req = (method, target, opts) => {
    accepted++;
    return closedRequest(tether.port, method, target, opts);
  };
  const stats = () => {
    accepted++;
    return getStats(tether.port);
  };

  test('an idle tether: zeros, except other=1 and accepted_total=1 (the stats request itself)', { timeout: TEST_TIMEOUT }, async () => {
    const st = await stats();
    assertStatsShape(st);
    assert.equal(st.version, version, 'version: the one `tether -v` prints');
    assert.equal(st.pid, tether.pid);
    assert.deepEqual(st.connections, { websocket: 0, sse: 0, poll_waiting: 0, other: 1, accepted_total: 1 });
    assert.deepEqual(st.sessions, {
      active: 0,
      opened_total: 0,
      resumed_total: 0,
      expired_total: 0,
      closed_total: { backend: 0, client: 0, linger: 0, slow_client: 0, upstream_lost: 0, shutdown: 0 },
    });
    const zero = { in: 0, out: 0, in_bytes: 0, out_bytes: 0 };
    assert.deepEqual(st.messages, { websocket: zero, sse: zero, poll: zero });
    assert.equal(st.buffer_full_pauses_total, 0);
    assert.deepEqual(
      { ...st.limits, max_connections: 0 },
      { client_connections: 1, max_connections: 0, client_sessions: 0, client_addresses: 1, hits_total: Object.fromEntries(LIMITS.map((l) => [l, 0])) },
      'limits: the stats request is the one client connection',
    );
    assert.ok(st.limits.max_connections > 0, 'max_connections (derived from the fd limit) is positive');
    assert.deepEqual(st.rates, { messages_per_second_10s: 0, messages_per_second_1m: 0 });
    // The implicit upstream of `tether_pass ws://host:port` appears under "host:port".
    assert.deepEqual(Object.keys(st.upstreams), [upstreamName]);
    const up = st.upstreams[upstreamName];
    assert.equal(up.balance, 'round_robin');
    assert.equal(up.sticky, undefined, 'no sticky: no "sticky" object');
    assert.equal(up.servers.length, 1);
    assert.deepEqual(
      { ...up.servers[0], reason: '' },
      {
        server: upstreamName,
        state: 'up',
        reason: '',
        active: 0,
        picks_total: 0,
        connect_failures_total: 0,
        handshake_ms: { count: 0, p50: 0, p90: 0, p99: 0 },
      },
    );

    // The same state as Prometheus text.
    accepted++;
    assertPrometheusMatches(await getPrometheus(tether.port), st);
  });

  let afterTraffic; // the JSON of the next test, for the Prometheus comparison

  test('figures after traffic equal what the test did, exactly', { timeout: TEST_TIMEOUT }, async () => {
    const K = 4;
    const expectMsg = { websocket: { in: [], out: [] }, sse: { in: [], out: [] }, poll: { in: [], out: [] } };

    // 3 WebSocket relays, K messages each way (text with multi-byte characters, and a binary).
    const relays = [];
    for (let r = 0; r < 3; r++) {
      const p = `/app/${tag(`ws${r}`)}`;
      accepted++;
      const client = await openWs(`ws://127.0.0.1:${tether.port}${p}`);
      const conn = await backend.waitConnection((c) => c.path === p);
      relays.push({ client, conn });
      for (let i = 1; i <= K; i++) {
        const m = i === K ? Buffer.from([r, i, 0, 255, 7]) : `ws${r} in ${i} ü${'x'.repeat(i * 3)}`;
        client.ws.send(m);
        expectMsg.websocket.in.push(bytes(m));
      }
      await waitBackendMessages(conn, K);
      for (let i = 1; i <= K; i++) {
        const m = i === 2 ? Buffer.alloc(17 + r, 1) : `ws${r} out ${i} ✓${'y'.repeat(i)}`;
        conn.ws.send(m);
        expectMsg.websocket.out.push(bytes(m));
        const got = await client.next();
        assert.deepEqual(Buffer.from(got.data), Buffer.isBuffer(m) ? m : Buffer.from(m), `relay ${r} message ${i}`);
      }
    }

    // 2 SSE sessions: K backend messages each (one binary), K POSTs each (one binary).
    const sse = [];
    for (let j = 0; j < 2; j++) {
      const p = `/app/${tag(`sse${j}`)}`;
      accepted++;
      const s = await openSse(tether.port, p);
      assertSseHead(s, p);
      const { sid } = await readOpen(s);
      const conn = await backend.waitConnection((c) => c.path === p);
      sse.push({ p, s, sid, conn });
      for (let i = 1; i <= K; i++) {
        const m = i === 3 ? Buffer.from('binary ✓ payload') : `sse${j} out ${i} é${'z'.repeat(i * 2)}`;
        conn.ws.send(m);
        expectMsg.sse.out.push(bytes(m));
        const ev = await s.nextEvent();
        assert.equal(ev.id, `${sid}.${i}`, JSON.stringify(ev));
        if (Buffer.isBuffer(m)) {
          assert.equal(ev.event, 'binary');
          assert.equal(ev.data, m.toString('base64'));
        } else {
          assertMessage(ev, sid, i, m);
        }
      }
      for (let i = 1; i <= K; i++) {
        const binary = i === 2;
        const m = binary ? Buffer.from([9, 8, 7, 6, 5, 4]) : `sse${j} in ${i} ö${'w'.repeat(i)}`;
        const res = await req('POST', `${p}?tether-session=${sid}&tether-seq=${i}`, {
          headers: { 'Content-Type': binary ? 'application/octet-stream' : 'text/plain; charset=utf-8' },
          body: m,
        });
        assert.equal(res.status, 204, `POST ${i}: ${res.rawHead}\n${res.body}`);
        expectMsg.sse.in.push(bytes(m));
      }
      await waitBackendMessages(conn, K);
    }

    // Resume the first SSE session once (200), and get one more message on the resumed stream.
    sse[0].s.destroy();
    accepted++;
    const resumed = await openSse(tether.port, sse[0].p, { lastEventId: `${sse[0].sid}.${K}` });
    assertSseHead(resumed, 'the resumed stream');
    sse[0].conn.ws.send('after the resume');
    expectMsg.sse.out.push(bytes('after the resume'));
    assertMessage(await resumed.nextEvent(), sse[0].sid, K + 1, 'after the resume');

    // A third SSE session that the backend closes; the reconnect naming tether-close's id gets
    // 204 (not a resume) and ends the session: closed_total.backend.
    const pc = `/app/${tag('sse-closed')}`;
    accepted++;
    const sc = await openSse(tether.port, pc);
    const { sid: sidClosed } = await readOpen(sc);
    const connClosed = await backend.waitConnection((c) => c.path === pc);
    connClosed.ws.send('last words');
    expectMsg.sse.out.push(bytes('last words'));
    connClosed.ws.close(1000, 'bye');
    assertMessage(await sc.nextEvent(), sidClosed, 1, 'last words');
    const closeEv = await sc.nextEvent({ what: 'tether-close' });
    assert.equal(closeEv.event, 'tether-close');
    assert.equal(closeEv.id, `${sidClosed}.2`);
    await sc.waitEnd();
    const ended = await req('GET', pc, { headers: { Accept: 'text/event-stream', 'Last-Event-ID': `${sidClosed}.2` } });
    assert.equal(ended.status, 204, `reconnect with tether-close's id: ${ended.rawHead}`);

    // 2 poll sessions: K backend messages each (one binary) polled, K POSTs each.
    const polls = [];
    for (let j = 0; j < 2; j++) {
      const p = `/app/${tag(`poll${j}`)}`;
      const open = await req('GET', `${p}?tether-transport=poll`);
      assert.equal(open.status, 200, `poll open: ${open.rawHead}\n${open.body}`);
      const sid = open.json.session;
      const conn = await backend.waitConnection((c) => c.path === p);
      polls.push({ p, sid, conn, ack: 0 });
      const sent = [];
      for (let i = 1; i <= K; i++) {
        const m = i === 1 ? Buffer.from([1, 2, 3]) : `poll${j} out ${i} ß${'q'.repeat(i * 4)}`;
        conn.ws.send(m);
        sent.push(m);
        expectMsg.poll.out.push(bytes(m));
      }
      const got = [];
      while (got.length < K) {
        const res = await req('GET', `${p}?tether-session=${sid}&tether-ack=${polls[j].ack}`);
        assert.equal(res.status, 200, `poll: ${res.rawHead}\n${res.body}`);
        for (const m of res.json.messages) {
          assert.equal(m.seq, polls[j].ack + 1);
          polls[j].ack = m.seq;
          got.push(m);
        }
      }
      got.forEach((m, i) => {
        if (Buffer.isBuffer(sent[i])) assert.equal(m.binary, sent[i].toString('base64'));
        else assert.equal(m.text, sent[i]);
      });
      for (let i = 1; i <= K; i++) {
        const m = `poll${j} in ${i} ñ${'r'.repeat(i * 5)}`;
        const res = await req('POST', `${p}?tether-session=${sid}&tether-seq=${i}`, {
          headers: { 'Content-Type': 'text/plain; charset=utf-8' },
          body: m,
        });
        assert.equal(res.status, 204, `POST ${i}: ${res.rawHead}\n${res.body}`);
        expectMsg.poll.in.push(bytes(m));
      }
      await waitBackendMessages(conn, K);
    }

    // DELETE the second poll session: closed_total.client; its upstream gets 1000.
    const d = await req('DELETE', `${polls[1].p}?tether-session=${polls[1].sid}`);
    assert.equal(d.status, 204, `DELETE: ${d.rawHead}\n${d.body}`);
    assert.equal((await backendClosed(polls[1].conn)).code, 1000);

    // A session that nobody polls expires by its linger (200 ms): expired_total, closed_total.linger.
    const ps = `/short/${tag('linger')}`;
    const openShort = await req('GET', `${ps}?tether-transport=poll`);
    assert.equal(openShort.status, 200);
    const sidShort = openShort.json.session;
    const connShort = await backend.waitConnection((c) => c.path === ps);
    await tether.waitStderr((l) => l.includes(`session ${sidShort.slice(0, 6)}… ended`), `the log line "session ${sidShort.slice(0, 6)}… ended"`);
    assert.equal((await backendClosed(connShort)).code, 1001, 'a lingered-out session closes its upstream with 1001');

    // One poll held on the first poll session (poll_waiting); a round trip proves tether has it.
    accepted++;
    const held = await RawHttp.connect(tether.port);
    held.write(`GET ${polls[0].p}?tether-session=${polls[0].sid}&tether-ack=${polls[0].ack} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    const rt = await req('GET', '/no-such-location');
    assert.equal(rt.status, 404);
    assert.equal(held.buf.length, 0, 'the poll is held');

    const st = await stats();
    afterTraffic = st;

    // Release the held poll with one more message, and await tether closing its connection,
    // so that the next test starts from a known state (whatever the assertions below say).
    polls[0].conn.ws.send('release');
    const released = await held.readResponse();
    assert.equal(released.status, 200);
    assert.deepEqual(parseJson(released.body).messages, [{ seq: K + 1, text: 'release' }]);
    await held.waitClose();
    held.destroy();

    assertStatsShape(st);
    assert.deepEqual(st.connections, { websocket: 3, sse: 2, poll_waiting: 1, other: 1, accepted_total: accepted }, 'connections');
    assert.deepEqual(
      st.sessions,
      {
        active: 3, // sse0 (resumed), sse1, poll0
        opened_total: 6, // sse0, sse1, sse-closed, poll0, poll1, short
        resumed_total: 1,
        expired_total: 1,
        closed_total: { backend: 1, client: 1, linger: 1, slow_client: 0, upstream_lost: 0, shutdown: 0 },
      },
      'sessions',
    );
    const m = (k) => ({
      in: expectMsg[k].in.length,
      out: expectMsg[k].out.length,
      in_bytes: sum(expectMsg[k].in),
      out_bytes: sum(expectMsg[k].out),
    });
    assert.deepEqual(st.messages, { websocket: m('websocket'), sse: m('sse'), poll: m('poll') }, 'messages');
    assert.equal(st.buffer_full_pauses_total, 0);
    // Rates: no more than the messages there were (a rate may leave out the second still filling;
    // the JSON has 6 significant digits).
    const total = sum(MSG_KINDS.flatMap((k) => [st.messages[k].in, st.messages[k].out]));
    assert.ok(st.rates.messages_per_second_10s * 10 <= total * (1 + 1e-5), `10 s rate ${st.rates.messages_per_second_10s} for ${total} messages`);
    assert.ok(st.rates.messages_per_second_1m * 60 <= total * (1 + 1e-5), `1 min rate ${st.rates.messages_per_second_1m} for ${total} messages`);
    assert.deepEqual(Object.keys(st.upstreams), [upstreamName]);
    const s = st.upstreams[upstreamName].servers[0];
    assert.equal(s.server, upstreamName);
    assert.equal(s.state, 'up');
    assert.equal(s.active, 6, 'active: 3 relays and 3 live sessions');
    assert.equal(s.picks_total, 9, 'picks: 3 relays and 6 sessions');
    assert.equal(s.connect_failures_total, 0);
    assert.equal(s.handshake_ms.count, 9, 'one handshake per relay and per session');
    assert.ok(s.handshake_ms.p99 > 0, `handshake p99 ${s.handshake_ms.p99}`);
  });

  test('the Prometheus text parses line by line and carries the same figures as the JSON', { timeout: TEST_TIMEOUT }, async () => {
    assert.ok(afterTraffic, 'needs the state left by the previous test');
    // The held poll was released: take the JSON again, then the text, on closed connections.
    const st = await stats();
    assert.equal(st.connections.poll_waiting, 0, 'the held poll was answered');
    assert.equal(st.connections.other, 1);
    assert.equal(st.sessions.opened_total, afterTraffic.sessions.opened_total);
    assert.equal(st.messages.poll.out, afterTraffic.messages.poll.out + 1, 'the message that released the poll');
    assert.deepEqual({ ...st.messages, poll: null }, { ...afterTraffic.messages, poll: null });
    accepted++;
    const text = await getPrometheus(tether.port);
    const p = assertPrometheusMatches(text, st);
    assert.equal(sampleValue(p, 'tether_connections', { transport: 'websocket' }), 3);
    assert.equal(sampleValue(p, 'tether_sessions_opened_total'), 6);
    assert.equal(sampleValue(p, 'tether_messages_total', { transport: 'poll', direction: 'in' }), 8);
    assert.equal(sampleValue(p, 'tether_connections_accepted_total'), accepted);
  });
});

describe('stats of a sticky upstream', () => {
  let a;
  let b;
  let tether;

  before(async () => {
    a = await startNodeWsBackend({ echo: false });
    b = await startNodeWsBackend({ echo: false });
    tether = await startTether(`
error_log stderr info;
upstream pool {
    server 127.0.0.1:${a.port};
    server 127.0.0.1:${b.port};
    sticky cookie tether_route;
    stick_table size=100 expire=30m;
}
server {
    listen 127.0.0.1:0;
    location /st/ { tether_pass ws://pool; tether_session_linger 30s; }
    location = /tether/stats { tether_stats; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), a?.close(), b?.close()]);
  });

  test('5 sessions of 2 users: entries 2, misses 2, hits 3; servers active and picks', { timeout: TEST_TIMEOUT }, async () => {
    // Tether answers a session's open only once its upstream is open: by then the backend
    // has the connection.
    const where = (p) => {
      const inA = a.connections.some((c) => c.path === p);
      const inB = b.connections.some((c) => c.path === p);
      assert.ok(inA !== inB, `${p} reached ${inA && inB ? 'both backends' : 'no backend'}`);
      return inA ? 'a' : 'b';
    };
    const cookieOf = (setCookie) => {
      const v = [].concat(setCookie ?? []);
      assert.equal(v.length, 1, `one Set-Cookie for a user without the cookie: ${JSON.stringify(v)}`);
      return v[0].split(';')[0];
    };
    // User 1: a WebSocket without the cookie (gets one), then SSE and poll with it.
    const p1 = `/st/${tag('u1-ws')}`;
    const ws1 = await openWs(`ws://127.0.0.1:${tether.port}${p1}`);
    const c1 = cookieOf(ws1.upgrade.headers['set-cookie']);
    const s1 = where(p1);
    const p2 = `/st/${tag('u1-sse')}`;
    const sse1 = await openSse(tether.port, p2, { headers: { Cookie: c1 } });
    assertSseHead(sse1);
    await readOpen(sse1);
    assert.equal(sse1.headers['set-cookie'], undefined, 'no new cookie for a user who has one');
    const p3 = `/st/${tag('u1-poll')}`;
    const poll1 = await closedRequest(tether.port, 'GET', `${p3}?tether-transport=poll`, { headers: { Cookie: c1 } });
    assert.equal(poll1.status, 200);
    // User 2: a poll session without the cookie, then a WebSocket with it.
    const p4 = `/st/${tag('u2-poll')}`;
    const poll2 = await closedRequest(tether.port, 'GET', `${p4}?tether-transport=poll`);
    assert.equal(poll2.status, 200);
    const c2 = cookieOf(poll2.headers['set-cookie']);
    const s2 = where(p4);
    const p5 = `/st/${tag('u2-ws')}`;
    const ws2 = await openWs(`ws://127.0.0.1:${tether.port}${p5}`, [], { headers: { Cookie: c2 } });

    assert.equal(where(p2), s1, "user 1's SSE session on user 1's server");
    assert.equal(where(p3), s1, "user 1's poll session on user 1's server");
    assert.equal(where(p5), s2, "user 2's WebSocket on user 2's server");
    assert.notEqual(s1, s2, 'round robin gave the two users different servers');

    const st = await getStats(tether.port);
    assertStatsShape(st);
    assert.deepEqual(Object.keys(st.upstreams), ['pool']);
    const up = st.upstreams.pool;
    assert.equal(up.balance, 'round_robin');
    assert.deepEqual(up.sticky, { entries: 2, capacity: 100, hits_total: 3, misses_total: 2, evictions_total: 0, expired_total: 0 });
    const byServer = Object.fromEntries(up.servers.map((s) => [s.server, s]));
    const port = { a: a.port, b: b.port };
    const srv1 = byServer[`127.0.0.1:${port[s1]}`];
    const srv2 = byServer[`127.0.0.1:${port[s2]}`];
    assert.ok(srv1 && srv2, `servers ${JSON.stringify(Object.keys(byServer))}`);
    assert.equal(srv1.active, 3, "user 1's server has its 3 sessions");
    assert.equal(srv2.active, 2, "user 2's server has its 2 sessions");
    // A pick is a balancing decision: each user's first session (a stick-table miss); the
    // later sessions of a user follow the table (hits) and are no picks.
    assert.equal(srv1.picks_total, 1, "picks of user 1's server");
    assert.equal(srv2.picks_total, 1, "picks of user 2's server");
    assert.equal(srv1.handshake_ms.count, 3);
    assert.equal(srv2.handshake_ms.count, 2);
    assert.deepEqual(st.connections, { websocket: 2, sse: 1, poll_waiting: 0, other: 1, accepted_total: 6 });
    assert.equal(st.sessions.active, 3);
    assert.equal(st.sessions.opened_total, 3);

    assertPrometheusMatches(await getPrometheus(tether.port), st);
    ws1.ws.close();
    ws2.ws.close();
    sse1.destroy();
    await Promise.all([ws1.closed, ws2.closed]);
  });
});

// -------------------------------------------------------------------------------------------

describe('allow and deny', () => {
  let backend;
  let tether;

  before(async () => {
    backend = await startNodeWsBackend();
    tether = await startTether(`
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location = /only-one { tether_stats; allow 127.0.0.1; deny all; }
    location = /cidr { tether_stats; allow 127.0.0.0/30; deny all; }
    location = /deny-first { tether_stats; deny 127.0.0.2; allow all; }
    location = /first-match { tether_stats; allow 127.0.0.2; deny 127.0.0.0/8; allow all; }
    location = /no-match { tether_stats; deny 10.0.0.0/8; allow 192.168.0.1; }
    location = /deny-all { tether_stats; deny all; }
    location = /plain { return 200 "plain"; deny 127.0.0.3; }
    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; deny 127.0.0.2; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close()]);
  });

  const get = (target, from) => closedRequest(tether.port, 'GET', target, { localAddress: from });

  test('rules are evaluated in order, first match wins, no match allows; denied is 403 with a one-line reason', { timeout: TEST_TIMEOUT }, async () => {
    const cases = [
      ['/only-one', '127.0.0.1', 200],
      ['/only-one', '127.0.0.2', 403],
      ['/cidr', '127.0.0.1', 200],
      ['/cidr', '127.0.0.2', 200],
      ['/cidr', '127.0.0.3', 200],
      ['/cidr', '127.0.0.4', 403],
      ['/cidr', '127.0.0.5', 403],
      ['/deny-first', '127.0.0.1', 200],
      ['/deny-first', '127.0.0.2', 403],
      ['/deny-first', '127.0.0.3', 200],
      ['/first-match', '127.0.0.2', 200],
      ['/first-match', '127.0.0.1', 403],
      ['/no-match', '127.0.0.1', 200],
      ['/deny-all', '127.0.0.1', 403],
      ['/plain', '127.0.0.1', 200],
      ['/plain', '127.0.0.3', 403],
    ];
    for (const [target, from, status] of cases) {
      const res = await get(target, from);
      const what = `GET ${target} from ${from}`;
      if (status === 200) {
        assert.equal(res.status, 200, `${what}: ${res.rawHead}\n${res.body}`);
        if (target === '/plain') assert.equal(res.body, 'plain');
        else assert.match(String(res.headers['content-type']), /^application\/json\b/, what);
      } else {
        assertOneLineReason(res, 403, what);
      }
    }
    // Prometheus text is behind the same rules.
    assertOneLineReason(await get('/only-one?format=prometheus', '127.0.0.2'), 403, 'prometheus from 127.0.0.2');
    assert.equal((await get('/only-one?format=prometheus', '127.0.0.1')).status, 200);
  });

  test('allow/deny also guard a proxied location: WebSocket, SSE and poll get 403 from a denied address', { timeout: TEST_TIMEOUT }, async () => {
    const p = `/app/${tag('acl')}`;
    const ws = new WebSocket(`ws://127.0.0.1:${tether.port}${p}`, { localAddress: '127.0.0.2' });
    const status = await withTimeout(
      new Promise((resolve, reject) => {
        ws.once('unexpected-response', (r, res) => {
          resolve(res.statusCode);
          r.destroy();
        });
        ws.once('open', () => reject(new Error('the WebSocket from a denied address opened')));
        ws.on('error', () => {});
      }),
      10_000,
      'the answer to a denied upgrade',
    );
    assert.equal(status, 403);
    const sse = await openSse(tether.port, p, { localAddress: '127.0.0.2' });
    assertOneLineReason(sse.response, 403, 'SSE from a denied address');
    assertOneLineReason(await get(`${p}?tether-transport=poll`, '127.0.0.2'), 403, 'poll from a denied address');
    assert.equal(backend.connections.filter((c) => c.path.startsWith(p)).length, 0, 'a denied request never reaches the backend');
    // From an allowed address the location works.
    const ok = await openWs(`ws://127.0.0.1:${tether.port}${p}`, [], { localAddress: '127.0.0.1' });
    ok.ws.send('hi');
    assert.equal((await ok.next()).data.toString(), 'hi');
    ok.ws.close();
    await ok.closed;
  });
});

// -------------------------------------------------------------------------------------------
// Reloads

/**
 * A session on `transport` that keeps messages flowing both ways through an echo backend: it
 * sends id:1, id:2, ... and awaits each echo before the next, checking order as it goes.
 */
function pumpSession(s, port, progress, stopped) {
  const base = `http://127.0.0.1:${port}`;
  const expect = (n, got) => assert.equal(got, `${s.id}:${n}`, `${s.transport} session ${s.id}: message ${n}`);
  return (async () => {
    while (!stopped()) {
      const n = s.sent + 1;
      const text = `${s.id}:${n}`;
      s.sent = n;
      if (s.transport === 'ws') {
        s.client.ws.send(text);
        const m = await s.client.next(15_000);
        expect(n, m.data.toString());
      } else if (s.transport === 'sse') {
        const r = await send(`${base}${s.path}`, s.sid, n, text, { timeoutMs: 15_000 });
        assert.equal(r.status, 204, `sse ${s.id} POST ${n}: ${r.status} ${r.body}`);
        const ev = await s.sse.nextEvent({ timeoutMs: 15_000 });
        assertMessage(ev, s.sid, n, text);
      } else {
        const r = await send(`${base}${s.path}`, s.sid, n, text, { timeoutMs: 15_000 });
        assert.equal(r.status, 204, `poll ${s.id} POST ${n}: ${r.status} ${r.body}`);
        // Poll (held until the echo is there) until seq n arrived.
        while (s.ack < n) {
          const json = pollJson(await poll(`${base}${s.path}`, s.sid, s.ack, { timeoutMs: 15_000 }), `poll ${s.id}`);
          assert.equal(json.close, undefined, `poll session ${s.id} closed: ${JSON.stringify(json)}`);
          for (const m of json.messages) {
            assert.equal(m.seq, s.ack + 1, `poll ${s.id}: seq ${m.seq} after ack ${s.ack}`);
            expect(m.seq, m.text);
            s.ack = m.seq;
          }
        }
      }
      s.got = n;
      progress();
    }
  })();
}

describe('reload', () => {
  test('SIGHUP under 200 live sessions with messages flowing: none dropped, no message lost; new requests see the new config', { timeout: 45_000 }, async () => {
    const backend = await startNodeWsBackend(); // echo
    const conf = (extra) => `
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; tether_session_linger 30s; tether_poll_timeout 30s; }
${extra.location}
}
${extra.server}
`;
    const tether = await startTether(conf({ location: '', server: '' }));
    try {
      await started(tether);
      const N = 200;
      const sessions = [];
      for (let i = 0; i < N; i++) {
        const transport = ['ws', 'sse', 'poll'][i % 3];
        sessions.push({ id: `${transport}${i}`, transport, path: `/app/${tag(`r${i}`)}`, sent: 0, got: 0, ack: 0 });
      }
      await mapLimit(sessions, 25, async (s) => {
        if (s.transport === 'ws') {
          s.client = await openWs(`ws://127.0.0.1:${tether.port}${s.path}`);
        } else if (s.transport === 'sse') {
          s.sse = await openSse(tether.port, s.path);
          assertSseHead(s.sse);
          s.sid = (await readOpen(s.sse)).sid;
        } else {
          const r = await closedRequest(tether.port, 'GET', `${s.path}?tether-transport=poll`);
          assert.equal(r.status, 200, `poll open: ${r.body}`);
          s.sid = r.json.session;
        }
      });

      // Progress barrier: resolves once every session has had `n` round trips.
      let waiters = [];
      const progress = () => {
        for (const w of [...waiters]) {
          if (sessions.every((s) => s.got >= w.target(s))) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve();
          }
        }
      };
      const allReach = (target, what) => {
        let w;
        const p = new Promise((resolve) => {
          w = { target, resolve };
          waiters.push(w);
        });
        progress();
        return withTimeout(p, 20_000, () => `${what}; behind: ${sessions.filter((s) => s.got < target(s)).map((s) => `${s.id}@${s.got}`).slice(0, 10).join(' ')}`);
      };
      let stop = false;
      const pumps = sessions.map((s) => pumpSession(s, tether.port, progress, () => stop));
      const pumpsDone = Promise.all(pumps);
      pumpsDone.catch(() => {}); // awaited below; a failure meanwhile must not be unhandled
      const failed = Promise.race(pumps.map((p) => p.then(() => new Promise(() => {})))); // rejects on the first pump failure
      failed.catch(() => {});

      await Promise.race([allReach(() => 3, 'every session to exchange 3 messages before the reload'), failed]);

      // The new config: an added location, an added listener (in a new server block).
      fs.writeFileSync(
        tether.confFile,
        conf({
          location: '    location = /added { return 200 "added"; }',
          server: `server {\n    listen 127.0.0.2:0;\n    location = /added { return 200 "added on the new listener"; }\n    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; }\n}`,
        }),
      );
      const mark = tether.stderrLines.length;
      const inFlight = sessions.filter((s) => s.sent > s.got).length;
      process.kill(tether.pid, 'SIGHUP');
      const reloaded = await tether.waitStderrFrom(mark, (l) => l.includes('configuration reloaded from'), '"configuration reloaded"');
      assert.ok(reloaded.includes(`configuration reloaded from ${tether.confFile}`), reloaded);
      assert.ok(reloaded.includes('[notice]'), `the reload is logged at notice: ${reloaded}`);
      const atReload = new Map(sessions.map((s) => [s, s.sent]));
      await Promise.race([allReach((s) => atReload.get(s) + 3, 'every session to exchange 3 more messages after the reload'), failed]);

      // New requests see the new config, on the old listener and on the new one.
      const added = await closedRequest(tether.port, 'GET', '/added');
      assert.equal(added.status, 200, `the added location: ${added.rawHead}`);
      assert.equal(added.body, 'added');
      const newListen = listeningLines(tether, mark).filter((l) => l.addr === '127.0.0.2');
      assert.equal(newListen.length, 1, `one "listening on 127.0.0.2:…" line after the reload: ${tether.stderrLines.slice(mark).join('\n')}`);
      const onNew = await closedRequest(newListen[0].port, 'GET', '/added', { host: '127.0.0.2' });
      assert.equal(onNew.status, 200);
      assert.equal(onNew.body, 'added on the new listener');
      const fresh = await openWs(`ws://127.0.0.2:${newListen[0].port}/app/${tag('fresh')}`);
      fresh.ws.send('through the new listener');
      assert.equal((await fresh.next()).data.toString(), 'through the new listener');
      fresh.ws.close();

      stop = true;
      await withTimeout(Promise.race([pumpsDone, failed]), 20_000, 'the pumps to finish');

      // None closed; every message reached the backend once, in order; every echo came back.
      assert.ok(inFlight > 0, 'messages were in flight when SIGHUP was sent');
      const byPath = new Map();
      for (const c of backend.connections) byPath.set(c.path, [...(byPath.get(c.path) ?? []), c]);
      for (const s of sessions) {
        assert.equal(s.got, s.sent, `${s.id}: every message came back`);
        const conns = byPath.get(s.path) ?? [];
        assert.equal(conns.length, 1, `${s.id}: one upstream connection for the whole life of the session`);
        const texts = conns[0].messages.map((m) => m.data.toString());
        assert.deepEqual(texts, Array.from({ length: s.sent }, (_, i) => `${s.id}:${i + 1}`), `${s.id}: the backend got every message once, in order`);
        assert.equal(conns[0].ws.readyState, WebSocket.OPEN, `${s.id}: the upstream is open`);
        if (s.transport === 'ws') assert.equal(s.client.ws.readyState, WebSocket.OPEN, `${s.id}: the client is open`);
        if (s.transport === 'sse') assert.equal(s.sse.closedBy, null, `${s.id}: the SSE stream is open`);
      }
      assert.ok(sessions.every((s) => s.sent >= atReload.get(s) + 3));
      for (const s of sessions) {
        if (s.client) s.client.ws.close();
        if (s.sse) s.sse.destroy();
      }
    } finally {
      await settleAll([tether.stop(), backend.close()]);
    }
  });

  test('`tether -s reload`: listeners added and removed, routes and upstreams replaced, the stick table of a surviving upstream kept, live relays untouched', { timeout: TEST_TIMEOUT }, async () => {
    const a = await startNodeWsBackend();
    const b = await startNodeWsBackend();
    const { dir, remove } = tempDir();
    const pidFile = path.join(dir, 'tether.pid');
    const v1 = `
error_log stderr info;
pid ${pidFile};
upstream pool {
    server 127.0.0.1:${a.port};
    sticky header X-User;
}
upstream unused { server 127.0.0.1:${b.port}; }
server {
    listen 127.0.0.1:0;
    listen 127.0.0.3:0;
    location /s/ { tether_pass ws://pool; }
    location /x/ { tether_pass ws://127.0.0.1:${a.port}; }
    location /old/ { return 200 "old"; }
    location = /tether/stats { tether_stats; }
}
`;
    // The pool lists b first, so that balancing would send a new user to b: a user stuck to a
    // before the reload must still go to a.
    const v2 = `
error_log stderr info;
pid ${pidFile};
upstream pool {
    server 127.0.0.1:${b.port};
    server 127.0.0.1:${a.port};
    sticky header X-User;
}
server {
    listen 127.0.0.1:0;
    listen 127.0.0.2:0;
    location /s/ { tether_pass ws://pool; }
    location /x/ { tether_pass ws://127.0.0.1:${b.port}; }
    location /new/ { return 200 "new"; }
    location = /tether/stats { tether_stats; }
}
`;
    const tether = await startTether(v1);
    try {
      await started(tether);
      const first = listeningLines(tether);
      const main = first.find((l) => l.addr === '127.0.0.1');
      const removed = first.find((l) => l.addr === '127.0.0.3');
      assert.ok(main && removed, `listening lines: ${JSON.stringify(first)}`);
      assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(tether.pid), 'the pid file');

      // Live before the reload: a relay through the listener that goes away, and a stuck user.
      const live = await openWs(`ws://127.0.0.3:${removed.port}/x/${tag('live')}`);
      live.ws.send('before');
      assert.equal((await live.next()).data.toString(), 'before');
      assert.equal(a.connections.length, 1, 'the /x/ relay went to a');
      const u1 = await openWs(`ws://127.0.0.1:${main.port}/s/${tag('u1-first')}`, [], { headers: { 'X-User': 'u1' } });
      const u1b = await openWs(`ws://127.0.0.1:${main.port}/s/${tag('u1-second')}`, [], { headers: { 'X-User': 'u1' } });
      assert.equal(a.connections.length, 3, "u1's sessions on a (the pool's only server)");
      const before = await getStats(main.port);
      assert.deepEqual(Object.keys(before.upstreams).sort(), [`127.0.0.1:${a.port}`, 'pool', 'unused'].sort());
      assert.deepEqual(before.upstreams.pool.sticky, { ...before.upstreams.pool.sticky, entries: 1, hits_total: 1, misses_total: 1 });
      assert.equal((await closedRequest(main.port, 'GET', '/old/')).body, 'old');

      fs.writeFileSync(tether.confFile, v2);
      const mark = tether.stderrLines.length;
      const r = await runTether(['-s', 'reload', '-c', tether.confFile]);
      assert.equal(r.code, 0, `tether -s reload: ${r.stderr}`);
      await tether.waitStderrFrom(mark, (l) => l.includes(`configuration reloaded from ${tether.confFile}`), '"configuration reloaded"');
      const added = listeningLines(tether, mark);
      assert.deepEqual(added.map((l) => l.addr), ['127.0.0.2'], `only the new listener is opened: ${tether.stderrLines.slice(mark).join('\n')}`);

      // Listeners: the kept one serves the new routes, the new one accepts, the removed one refuses.
      assert.equal(await tryConnect(removed.port, '127.0.0.3'), 'refused', 'the removed listener stops accepting');
      const n1 = await closedRequest(main.port, 'GET', '/new/');
      assert.equal(n1.status, 200);
      assert.equal(n1.body, 'new');
      const n2 = await closedRequest(added[0].port, 'GET', '/new/', { host: '127.0.0.2' });
      assert.equal(n2.body, 'new', 'the added listener serves the new config');
      assert.equal((await closedRequest(main.port, 'GET', '/old/')).status, 404, 'the removed location is gone');

      // Routes replaced: /x/ now goes to b; the relay opened before stays on a and keeps working.
      const after1 = await openWs(`ws://127.0.0.1:${main.port}/x/${tag('after')}`);
      after1.ws.send('to b');
      assert.equal((await after1.next()).data.toString(), 'to b');
      assert.equal(b.connections.length, 1, 'the new /x/ relay went to b');
      live.ws.send('after');
      assert.equal((await live.next()).data.toString(), 'after', 'the live relay through the removed listener still relays');
      assert.equal(a.connections[0].messages.map((m) => m.data.toString()).join(','), 'before,after');
      u1.ws.send('still');
      assert.equal((await u1.next()).data.toString(), 'still');

      // The stick table of "pool" was kept: u1 still goes to a (balancing would pick b).
      const u1c = await openWs(`ws://127.0.0.1:${main.port}/s/${tag('u1-third')}`, [], { headers: { 'X-User': 'u1' } });
      assert.equal(a.connections.length, 4, 'u1 is still stuck to a after the reload');
      const st = await getStats(main.port);
      assert.deepEqual(Object.keys(st.upstreams).sort(), [`127.0.0.1:${b.port}`, 'pool'], 'upstreams replaced');
      assert.equal(st.upstreams.pool.sticky.entries, 1);
      assert.equal(st.upstreams.pool.sticky.hits_total, 2);
      assert.equal(st.upstreams.pool.sticky.misses_total, 1);
      assert.equal(st.upstreams.pool.servers.length, 2);
      assert.equal(st.connections.websocket, 5, 'all relays are open');
      for (const c of [live, u1, u1b, u1c, after1]) c.ws.close();
      await Promise.all([live, u1, u1b, u1c, after1].map((c) => c.closed));
    } finally {
      await settleAll([tether.stop(), a.close(), b.close()]);
      remove();
    }
  });

  test('a bad reload is refused with FILE:LINE; the old config keeps serving and live sessions continue', { timeout: TEST_TIMEOUT }, async () => {
    const backend = await startNodeWsBackend(); // echo
    const good = `error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; tether_session_linger 30s; }
}
`;
    const tether = await startTether(good);
    const blocker = net.createServer();
    try {
      await started(tether);
      const base = `http://127.0.0.1:${tether.port}`;
      // Live sessions on every transport.
      const wsPath = `/app/${tag('ws')}`;
      const ws = await openWs(`ws://127.0.0.1:${tether.port}${wsPath}`);
      const ssePath = `/app/${tag('sse')}`;
      const sse = await openSse(tether.port, ssePath);
      const { sid: sseSid } = await readOpen(sse);
      const pollPath = `/app/${tag('poll')}`;
      const open = await closedRequest(tether.port, 'GET', `${pollPath}?tether-transport=poll`);
      const pollSid = open.json.session;
      let seq = 0;
      const exchange = async (what) => {
        seq++;
        ws.ws.send(`${what} ws`);
        assert.equal((await ws.next()).data.toString(), `${what} ws`);
        assert.equal((await send(`${base}${ssePath}`, sseSid, seq, `${what} sse`)).status, 204);
        assertMessage(await sse.nextEvent(), sseSid, seq, `${what} sse`);
        assert.equal((await send(`${base}${pollPath}`, pollSid, seq, `${what} poll`)).status, 204);
        const json = pollJson(await poll(`${base}${pollPath}`, pollSid, seq - 1));
        assert.deepEqual(json.messages, [{ seq, text: `${what} poll` }]);
      };
      await exchange('before');

      const bad = [
        // A syntax error on line 4: a missing ";".
        [
          `error_log stderr info;\nserver {\n    listen 127.0.0.1:0;\n    location /new/ { return 200 "new" }\n    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; }\n}\n`,
          4,
          null,
        ],
        // An unknown directive on line 3.
        [`error_log stderr info;\nserver {\n    tether_pas ws://127.0.0.1:1;\n    listen 127.0.0.1:0;\n}\n`, 3, /unknown directive "tether_pas"/],
      ];
      for (const [text, line, re] of bad) {
        fs.writeFileSync(tether.confFile, text);
        const logged = await signalAndWait(tether, 'SIGHUP', /reload failed|configuration reloaded/, 'the outcome of the reload');
        assert.match(logged, /\[error\]/, `a failed reload is an error: ${logged}`);
        assert.ok(
          logged.includes('reload failed, keeping the old configuration: ') && logged.endsWith(`${tether.confFile}:${line}`),
          `expected "reload failed, keeping the old configuration: … ${tether.confFile}:${line}", got: ${logged}`,
        );
        if (re) assert.match(logged, re);
        assert.equal((await closedRequest(tether.port, 'GET', '/new/')).status, 404, 'the bad config was not applied');
        await exchange(`after bad reload ${line}`);
        const fresh = await openWs(`ws://127.0.0.1:${tether.port}/app/${tag('fresh')}`);
        fresh.ws.send('old config');
        assert.equal((await fresh.next()).data.toString(), 'old config', 'the old config serves new sessions');
        fresh.ws.close();
      }

      // A config whose new listener cannot bind is refused too; the running listener stays.
      blocker.listen(0, '127.0.0.1');
      await once(blocker, 'listening');
      const taken = blocker.address().port;
      fs.writeFileSync(tether.confFile, `${good}server {\n    listen 127.0.0.1:${taken};\n}\n`);
      const bindFail = await signalAndWait(tether, 'SIGHUP', /reload failed|configuration reloaded/, 'the outcome of the reload');
      assert.match(bindFail, new RegExp(`reload failed, keeping the old configuration: .*127\\.0\\.0\\.1:${taken}`));
      assert.equal((await closedRequest(tether.port, 'GET', '/new/')).status, 404, 'the running listener still accepts, with the old config');
      await exchange('after the bind failure');

      // A good config applies afterwards.
      fs.writeFileSync(tether.confFile, good.replace('server {', 'server {\n    location = /new/ { return 200 "new"; }'));
      const ok = await signalAndWait(tether, 'SIGHUP', /reload failed|configuration reloaded/, 'the outcome of the reload');
      assert.match(ok, /configuration reloaded from/);
      assert.equal((await closedRequest(tether.port, 'GET', '/new/')).body, 'new');
      await exchange('after the good reload');
      const conns = backend.connections.filter((c) => [wsPath, ssePath, pollPath].includes(c.path));
      assert.equal(conns.length, 3, 'the live sessions kept their one upstream connection each');
      ws.ws.close();
      sse.destroy();
    } finally {
      blocker.close();
      await settleAll([tether.stop(), backend.close()]);
    }
  });
});

// -------------------------------------------------------------------------------------------
// Logs

const ACCESS_RE =
  /^(\S+) - \[(\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "([A-Z]+) (\S+) HTTP\/1\.[01]" (\d{3}) transport=(\S+) session=(\S+) upstream=(\S+) in=(\d+) out=(\d+) time=(\d+\.\d{3})$/;

function parseAccess(line) {
  const m = ACCESS_RE.exec(line);
  assert.ok(m, `not an access log line: ${JSON.stringify(line)}`);
  const [, client, time, method, target, status, transport, session, upstream, inB, outB, secs] = m;
  return { client, time, method, target, status: Number(status), transport, session, upstream, in: Number(inB), out: Number(outB), secs: Number(secs) };
}

describe('logs', () => {
  test('access log: one line per request, relay (when it ends) and SSE stream (when it ends); session ids never whole', { timeout: TEST_TIMEOUT }, async () => {
    const backend = await startNodeWsBackend({ echo: false });
    const { dir, remove } = tempDir();
    const accessLog = path.join(dir, 'access.log');
    const tether = await startTether(`
error_log stderr info;
access_log ${accessLog};
server {
    listen 127.0.0.1:0;
    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; tether_session_linger 30s; }
}
`);
    const log = followFile(accessLog);
    try {
      const base = `http://127.0.0.1:${tether.port}`;
      const r404 = await closedRequest(tether.port, 'GET', '/nothing?a=1');
      assert.equal(r404.status, 404);
      await log.waitLine((l) => l.includes('"GET /nothing?a=1 HTTP/1.1" 404'), 'the 404 line');

      // A WebSocket relay: its line comes when it ends.
      const wsPath = `/app/${tag('ws')}?room=1`;
      const ws = await openWs(`ws://127.0.0.1:${tether.port}${wsPath}`);
      const wsConn = await backend.waitConnection((c) => c.path === wsPath);
      ws.ws.send('hello');
      await waitBackendMessages(wsConn, 1);
      wsConn.ws.send('world!');
      await ws.next();
      assert.equal(log.lines().filter((l) => l.includes('transport=websocket')).length, 0, 'no line while the relay is open');
      ws.ws.close(1000);
      const wsLine = parseAccess(await log.waitLine((l) => l.includes('transport=websocket'), 'the relay line'));
      assert.equal(wsLine.client, '127.0.0.1');
      assert.equal(wsLine.method, 'GET');
      assert.equal(wsLine.target, wsPath);
      assert.equal(wsLine.status, 101);
      assert.equal(wsLine.session, '-');
      assert.equal(wsLine.upstream, `127.0.0.1:${backend.port}`);
      assert.ok(wsLine.in >= 5 && wsLine.out >= 6, `relay in/out cover the payloads: ${JSON.stringify(wsLine)}`);

      // An SSE stream: its line comes when it ends.
      const ssePath = `/app/${tag('sse')}`;
      const sse = await openSse(tether.port, ssePath);
      const { sid: sseSid } = await readOpen(sse);
      const sseConn = await backend.waitConnection((c) => c.path === ssePath);
      assert.equal((await send(`${base}${ssePath}`, sseSid, 1, 'up')).status, 204);
      sseConn.ws.send('down');
      await sse.nextEvent();
      sseConn.ws.close(1000, 'bye');
      await sse.waitEnd();
      const sseLine = parseAccess(await log.waitLine((l) => l.includes('transport=sse'), 'the SSE stream line'));
      assert.equal(sseLine.target, ssePath);
      assert.equal(sseLine.status, 200);
      assert.equal(sseLine.session, `${sseSid.slice(0, 6)}…`);

      // Poll: open, poll, POST, DELETE: one line each when answered.
      const pollPath = `/app/${tag('poll')}`;
      const open = await closedRequest(tether.port, 'GET', `${pollPath}?room=1&tether-transport=poll`);
      const pollSid = open.json.session;
      const short = `${pollSid.slice(0, 6)}…`;
      await closedRequest(tether.port, 'POST', `${pollPath}?tether-session=${pollSid}&tether-seq=1`, { body: 'abc', headers: { 'Content-Type': 'text/plain' } });
      const pollConn = await backend.waitConnection((c) => c.path === `${pollPath}?room=1`); // tether-* stripped
      pollConn.ws.send('x');
      await closedRequest(tether.port, 'GET', `${pollPath}?room=1&tether-session=${pollSid}&tether-ack=0`);
      await closedRequest(tether.port, 'DELETE', `${pollPath}?tether-session=${pollSid}`);
      const delLine = parseAccess(await log.waitLine((l) => l.startsWith('127.0.0.1 - [') && l.includes('"DELETE '), 'the DELETE line'));
      assert.equal(delLine.target, `${pollPath}?tether-session=${short}`);
      assert.equal(delLine.status, 204);
      assert.equal(delLine.session, short);

      const lines = log.lines().map(parseAccess);
      const pollLine = lines.find((l) => l.method === 'GET' && l.target.includes('tether-ack=0'));
      assert.ok(pollLine, 'the poll line');
      assert.equal(pollLine.target, `${pollPath}?room=1&tether-session=${short}&tether-ack=0`);
      assert.equal(pollLine.status, 200);
      assert.equal(pollLine.transport, 'poll');
      assert.equal(pollLine.session, short);
      const openLine = lines.find((l) => l.target === `${pollPath}?room=1&tether-transport=poll`);
      assert.ok(openLine, 'the poll open line');
      assert.equal(openLine.status, 200);
      assert.equal(openLine.transport, 'poll');
      const postLine = lines.find((l) => l.method === 'POST' && l.target.startsWith(pollPath));
      assert.equal(postLine.status, 204);
      assert.equal(postLine.target, `${pollPath}?tether-session=${short}&tether-seq=1`);
      assert.ok(postLine.in >= 3, `POST in=${postLine.in}`);
      // Every request the test made has its line; none names a session id whole (not even 7 chars).
      assert.equal(lines.length, 1 + 1 + 2 + 4, `lines:\n${log.lines().join('\n')}`);
      const text = fs.readFileSync(accessLog, 'utf8');
      for (const sid of [sseSid, pollSid]) {
        assert.ok(!text.includes(sid.slice(0, 7)), `the access log has more than 6 characters of ${sid}:\n${text}`);
        assert.ok(!tether.stderrLines.some((l) => l.includes(sid.slice(0, 7))), `the error log has more than 6 characters of ${sid}`);
      }
    } finally {
      log.close();
      await settleAll([tether.stop(), backend.close()]);
      remove();
    }
  });

  test('rotation: mv access.log, SIGUSR1 (then `tether -s reopen`): new lines go to a new file, old lines stay in the moved one', { timeout: TEST_TIMEOUT }, async () => {
    const { dir, remove } = tempDir();
    const accessLog = path.join(dir, 'access.log');
    const pidFile = path.join(dir, 'tether.pid');
    const tether = await startTether(`
error_log stderr info;
access_log ${accessLog};
pid ${pidFile};
server {
    listen 127.0.0.1:0;
    location / { return 200 "ok"; }
}
`);
    const log = followFile(accessLog);
    try {
      await started(tether);
      const hit = async (name) => {
        const r = await closedRequest(tether.port, 'GET', `/${name}`);
        assert.equal(r.status, 200);
        return log.waitLine((l) => l.includes(`"GET /${name} HTTP/1.1" 200`), `the line of /${name} in ${accessLog}`);
      };
      await hit('one');
      await hit('two');
      fs.renameSync(accessLog, `${accessLog}.1`);
      // Until the reopen, tether still writes to the moved file.
      await closedRequest(tether.port, 'GET', '/three');
      const moved = followFile(`${accessLog}.1`);
      await moved.waitLine((l) => l.includes('/three'), 'the line of /three in the moved file');
      moved.close();
      const reopened = await signalAndWait(tether, 'SIGUSR1', /log files reopened/, '"log files reopened"');
      assert.match(reopened, /\[notice\]/);
      await hit('four');
      assert.deepEqual(
        fs.readFileSync(`${accessLog}.1`, 'utf8').trim().split('\n').map((l) => parseAccess(l).target),
        ['/one', '/two', '/three'],
        'the moved file keeps the old lines and gets no new one',
      );
      assert.deepEqual(log.lines().map((l) => parseAccess(l).target), ['/four'], 'the new file has the new lines only');

      // Once more with `tether -s reopen` (the pid file).
      fs.renameSync(accessLog, `${accessLog}.2`);
      const mark = tether.stderrLines.length;
      const r = await runTether(['-s', 'reopen', '-c', tether.confFile]);
      assert.equal(r.code, 0, `tether -s reopen: ${r.stderr}`);
      await tether.waitStderrFrom(mark, (l) => l.includes('log files reopened'), '"log files reopened" after -s reopen');
      await hit('five');
      assert.deepEqual(fs.readFileSync(`${accessLog}.2`, 'utf8').trim().split('\n').map((l) => parseAccess(l).target), ['/four']);
      assert.deepEqual(log.lines().map((l) => parseAccess(l).target), ['/five']);
    } finally {
      log.close();
      await tether.stop();
      remove();
    }
  });

  test('rotation of error_log in a file: mv, SIGUSR1, "log files reopened" and later lines go to the new file', { timeout: TEST_TIMEOUT }, async () => {
    const { dir, remove } = tempDir();
    const errorLog = path.join(dir, 'error.log');
    const pidFile = path.join(dir, 'tether.pid');
    const confFile = path.join(dir, 'tether.conf');
    fs.writeFileSync(
      confFile,
      `error_log ${errorLog} info;\npid ${pidFile};\nserver {\n    listen 127.0.0.1:0;\n    location = /s { tether_stats; deny 127.0.0.2; }\n}\n`,
    );
    let t;
    try {
      t = await startTetherLoggingTo(confFile, errorLog);
      assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(t.pid));
      fs.renameSync(errorLog, `${errorLog}.1`);
      process.kill(t.pid, 'SIGUSR1');
      await t.log.waitLine((l) => l.includes('log files reopened'), '"log files reopened" in the new error log');
      // A later line (a reload) goes to the new file too.
      process.kill(t.pid, 'SIGHUP');
      await t.log.waitLine((l) => l.includes(`configuration reloaded from ${confFile}`), '"configuration reloaded" in the new error log');
      const old = fs.readFileSync(`${errorLog}.1`, 'utf8');
      assert.match(old, /listening on 127\.0\.0\.1:\d+/);
      assert.match(old, / tether \S+ started/);
      assert.doesNotMatch(old, /log files reopened|configuration reloaded/, 'nothing after the reopen in the moved file');
      const now = fs.readFileSync(errorLog, 'utf8');
      assert.doesNotMatch(now, /listening on|started/, 'the new file starts at the reopen');
      assert.equal(t.stderr(), '', 'nothing on stderr when error_log is a file');
      const { code, signal } = await t.stop('SIGTERM');
      assert.deepEqual({ code, signal }, { code: 0, signal: null });
      assert.equal(fs.existsSync(pidFile), false, 'the pid file is removed at exit');
    } finally {
      if (t) await t.stop('SIGKILL').catch(() => {});
      remove();
    }
  });
});

// -------------------------------------------------------------------------------------------
// Stopping

describe('stop', () => {
  /**
   * A tether with `extra` main-level directives in front of an echo-less backend, with
   * `ws` WebSocket relays, `sse` SSE sessions and `polls` poll sessions with a held poll each.
   */
  async function withLiveTraffic(extra, { ws: nWs, sse: nSse, polls: nPolls }) {
    const backend = await startNodeWsBackend({ echo: false });
    const tether = await startTether(`
error_log stderr info;
${extra}
server {
    listen 127.0.0.1:0;
    location /app/ { tether_pass ws://127.0.0.1:${backend.port}; tether_session_linger 30s; tether_poll_timeout 60s; }
}
`);
    await started(tether);
    const relays = [];
    for (let i = 0; i < nWs; i++) {
      const p = `/app/${tag(`ws${i}`)}`;
      const client = await openWs(`ws://127.0.0.1:${tether.port}${p}`);
      const conn = await backend.waitConnection((c) => c.path === p);
      relays.push({ client, conn });
    }
    const streams = [];
    for (let i = 0; i < nSse; i++) {
      const p = `/app/${tag(`sse${i}`)}`;
      const s = await openSse(tether.port, p);
      const { sid } = await readOpen(s);
      const conn = await backend.waitConnection((c) => c.path === p);
      conn.ws.send('one');
      assertMessage(await s.nextEvent(), sid, 1, 'one');
      streams.push({ s, sid, conn });
    }
    const polls = [];
    for (let i = 0; i < nPolls; i++) {
      const p = `/app/${tag(`poll${i}`)}`;
      const open = await closedRequest(tether.port, 'GET', `${p}?tether-transport=poll`);
      const sid = open.json.session;
      const conn = await backend.waitConnection((c) => c.path === p);
      const held = await startPoll(tether.port, p, sid, 0);
      polls.push({ sid, conn, held });
    }
    if (nPolls) {
      assert.equal((await closedRequest(tether.port, 'GET', '/no-such-location')).status, 404); // tether has read the polls
      assert.ok(polls.every((p) => !p.held.answered()), 'the polls are held');
    }
    return { backend, tether, relays, streams, polls };
  }

  /** Asserts that every peer got its 1001 close. */
  async function assertAllClosed1001({ relays, streams, polls }) {
    for (const { client, conn } of relays) {
      const c = await withTimeout(client.closed, 10_000, 'the WebSocket client to be closed');
      assert.equal(c.code, 1001, `the client's close: ${JSON.stringify(c)}`);
      const b = await backendClosed(conn);
      assert.equal(b.code, 1001, `the backend's close: ${JSON.stringify(b)}`);
    }
    for (const { s, sid, conn } of streams) {
      const ev = await s.nextEvent({ what: 'tether-close' });
      assert.equal(ev.event, 'tether-close', JSON.stringify(ev));
      assert.equal(ev.id, `${sid}.2`);
      assert.equal(parseJson(ev.data).code, 1001, ev.data);
      await s.waitEnd();
      assert.equal((await backendClosed(conn)).code, 1001, "an SSE session's upstream gets 1001");
    }
    for (const { held, conn } of polls) {
      const res = await held.response;
      assert.equal(res.status, 200, `the held poll's answer: ${res.rawHead}\n${res.body}`);
      assert.ok(res.json.close, `the held poll is answered with the close: ${res.body}`);
      assert.equal(res.json.close.code, 1001, res.body);
      assert.equal((await backendClosed(conn)).code, 1001, "a poll session's upstream gets 1001");
    }
  }

  test('SIGQUIT: 1001 to every WebSocket client and backend, tether-close 1001 to SSE clients, held polls answered with the close; exit 0 once done', { timeout: TEST_TIMEOUT }, async () => {
    // A long shutdown timeout: exiting before it proves tether exited because all was done.
    const live = await withLiveTraffic('tether_shutdown_timeout 60s;', { ws: 3, sse: 2, polls: 2 });
    const { tether, backend } = live;
    try {
      const closes = assertAllClosed1001(live);
      closes.catch(() => {});
      const result = await tether.stopWith('SIGQUIT');
      assert.deepEqual(result, { code: 0, signal: null });
      await closes;
      assert.ok(tether.stderrLines.some((l) => /graceful/.test(l)), 'the graceful shutdown is logged');
      assert.ok(!tether.stderrLines.some((l) => l.includes('deadline reached')), `tether exited because everything was done, not by its timeout\n${tether.dump()}`);
    } finally {
      await settleAll([tether.stop(), backend.close()]);
    }
  });

  test('SIGQUIT waits for a client that has not answered its close: new connections are refused meanwhile; exit 0 once it answers', { timeout: TEST_TIMEOUT }, async () => {
    // The drain can end only when the test lets the slow client read (or after 60 s): while it
    // is held, tether provably runs, and refuses connections.
    const live = await withLiveTraffic('tether_shutdown_timeout 60s;', { ws: 2, sse: 0, polls: 0 });
    const { tether, backend, relays } = live;
    const [quick, slow] = relays;
    try {
      slow.client.ws.pause(); // reads nothing for now: does not see the close frame yet
      const exited = tether.exited.then(() => 'exited');
      process.kill(tether.pid, 'SIGQUIT');
      // Once a client got its 1001, the stop has begun: the listener is closed.
      const c = await withTimeout(quick.client.closed, 10_000, 'the quick client to be closed');
      assert.equal(c.code, 1001);
      assert.equal((await backendClosed(slow.conn)).code, 1001, "the slow client's backend gets its 1001 at once");
      assert.equal(await tryConnect(tether.port), 'refused', 'a draining tether accepts no connection');
      assert.equal(await Promise.race([exited, Promise.resolve('running')]), 'running', 'tether waits for the slow client');
      assert.ok(tether.running, 'tether waits for the slow client');
      slow.client.ws.resume(); // now it reads the close frame and answers it
      const sc = await withTimeout(slow.client.closed, 10_000, 'the slow client to be closed');
      assert.equal(sc.code, 1001);
      assert.deepEqual(await tether.stopWith(null), { code: 0, signal: null });
    } finally {
      slow.client.ws.terminate();
      await settleAll([tether.stop(), backend.close()]);
    }
  });

  test('SIGQUIT with a client that never answers the close: exit 0 after tether_shutdown_timeout', { timeout: TEST_TIMEOUT }, async () => {
    const live = await withLiveTraffic('tether_shutdown_timeout 500ms;', { ws: 1, sse: 0, polls: 0 });
    const { tether, backend, relays } = live;
    const stuck = relays[0];
    try {
      stuck.client.ws.pause(); // never sees nor answers the close frame
      // Only tether_shutdown_timeout can end this drain.
      assert.deepEqual(await tether.stopWith('SIGQUIT'), { code: 0, signal: null });
      assert.equal((await backendClosed(stuck.conn)).code, 1001, "the stuck client's backend got 1001");
    } finally {
      stuck.client.ws.terminate();
      await settleAll([tether.stop(), backend.close()]);
    }
  });

  test('SIGTERM: 1001 to everyone at once, exit 0', { timeout: TEST_TIMEOUT }, async () => {
    const live = await withLiveTraffic('', { ws: 2, sse: 1, polls: 1 });
    const { tether, backend } = live;
    try {
      const closes = assertAllClosed1001(live);
      closes.catch(() => {});
      const result = await tether.stopWith('SIGTERM');
      assert.deepEqual(result, { code: 0, signal: null });
      await closes;
    } finally {
      await settleAll([tether.stop(), backend.close()]);
    }
  });

  test('`tether -s quit` through the pid file: the same graceful stop; the pid file is written at start and removed at exit', { timeout: TEST_TIMEOUT }, async () => {
    const { dir, remove } = tempDir();
    const pidFile = path.join(dir, 'run', 'tether.pid');
    fs.mkdirSync(path.dirname(pidFile));
    const live = await withLiveTraffic(`pid ${pidFile};`, { ws: 1, sse: 1, polls: 1 });
    const { tether, backend } = live;
    try {
      assert.equal(fs.readFileSync(pidFile, 'utf8'), `${tether.pid}\n`, 'the pid file holds the pid');
      const closes = assertAllClosed1001(live);
      closes.catch(() => {});
      const r = await runTether(['-s', 'quit', '-c', tether.confFile]);
      assert.equal(r.code, 0, `tether -s quit: ${r.stderr}`);
      const result = await tether.stopWith(null);
      assert.deepEqual(result, { code: 0, signal: null });
      await closes;
      assert.ok(tether.stderrLines.some((l) => /SIGQUIT|graceful/.test(l)), 'a graceful stop');
      assert.equal(fs.existsSync(pidFile), false, 'the pid file is removed at exit');
      // With tether gone, -s names the problem.
      const again = await runTether(['-s', 'stop', '-c', tether.confFile]);
      assert.equal(again.code, 1, '`tether -s` with no running tether fails');
    } finally {
      await settleAll([tether.stop(), backend.close()]);
      remove();
    }
  });

  test('`tether -s stop`: the fast stop through the pid file', { timeout: TEST_TIMEOUT }, async () => {
    const { dir, remove } = tempDir();
    const pidFile = path.join(dir, 'tether.pid');
    const live = await withLiveTraffic(`pid ${pidFile};`, { ws: 1, sse: 0, polls: 0 });
    const { tether, backend } = live;
    try {
      const closes = assertAllClosed1001(live);
      closes.catch(() => {});
      const r = await runTether(['-s', 'stop', '-c', tether.confFile]);
      assert.equal(r.code, 0, `tether -s stop: ${r.stderr}`);
      assert.deepEqual(await tether.stopWith(null), { code: 0, signal: null });
      await closes;
      assert.equal(fs.existsSync(pidFile), false);
    } finally {
      await settleAll([tether.stop(), backend.close()]);
      remove();
    }
  });
});

// -------------------------------------------------------------------------------------------
// Config

describe('config of the operations directives', () => {
  test('pid, access_log, error_log, tether_shutdown_timeout, tether_stats, allow, deny pass `tether -t`', async () => {
    const conf = `
pid /tmp/tether-test-never-written.pid;
access_log off;
error_log stderr notice;
tether_shutdown_timeout 1m30s;
server {
    listen 127.0.0.1:0;
    location = /tether/stats {
        tether_stats;
        allow 127.0.0.1;
        allow 10.0.0.0/8;
        allow ::1;
        allow 2001:db8::/32;
        deny all;
    }
    location /x { return 200 "x"; deny 192.168.1.1; allow all; }
}
`;
    const r = await checkConfig(conf);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /test is successful/);
    const r2 = await checkConfig('access_log /tmp/tether-test-never-written.log;\nserver { listen 127.0.0.1:0; }\n');
    assert.equal(r2.code, 0, r2.stderr);
  });

  test('bad values are errors with FILE:LINE', async () => {
    const cases = [
      ['server {\n    listen 127.0.0.1:0;\n    location /s {\n        tether_stats;\n        allow 300.1.1.1;\n    }\n}\n', 5, /invalid value "300\.1\.1\.1" in "allow" directive/],
      ['server {\n    listen 127.0.0.1:0;\n    location /s {\n        deny 10.0.0.0/33;\n    }\n}\n', 4, /invalid value "10\.0\.0\.0\/33" in "deny" directive/],
      ['\ntether_shutdown_timeout x;\nserver { listen 127.0.0.1:0; }\n', 2, /invalid value "x" in "tether_shutdown_timeout" directive/],
      ['server {\n    listen 127.0.0.1:0;\n    location /s { tether_stats on; }\n}\n', 3, /invalid number of arguments in "tether_stats" directive/],
      ['server {\n    listen 127.0.0.1:0;\n    pid /tmp/x.pid;\n}\n', 3, /"pid" directive is not allowed here/],
      ['server {\n    listen 127.0.0.1:0;\n    tether_stats;\n}\n', 3, /"tether_stats" directive is not allowed here/],
      ['server {\n    listen 127.0.0.1:0;\n    location /s { allow; }\n}\n', 3, /invalid number of arguments in "allow" directive/],
    ];
    for (const [text, line, re] of cases) {
      const r = await checkConfig(text);
      assert.equal(r.code, 1, `expected failure for:\n${text}\n${r.stderr}`);
      assert.match(r.stderr, re, text);
      assert.match(r.stderr, new RegExp(`\\[emerg\\] .* in ${escapeRe(r.file)}:${line}\\n`), `the error names ${r.file}:${line}:\n${r.stderr}`);
    }
  });

  test('`tether -s` needs a pid directive and a valid signal name', async () => {
    const { dir, remove } = tempDir();
    try {
      const file = path.join(dir, 'nopid.conf');
      fs.writeFileSync(file, 'server { listen 127.0.0.1:0; }\n');
      const r = await runTether(['-s', 'reload', '-c', file]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /pid/);
      const bad = await runTether(['-s', 'restart', '-c', file]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /restart/);
    } finally {
      remove();
    }
  });
});
