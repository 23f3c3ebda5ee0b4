// Routing and sticky tables: upstream pools with weights, balance (round_robin, hash), sticky
// keys (cookie, header, client IP, query) across WebSocket, SSE and long-poll sessions, passive
// failures and health checks, failover within a request, backup and down servers, and the
// config errors of the routing directives.
//
// Every backend is its own Node `ws` echo server; every session has its own path, so the
// backend that got it is the one whose connections have that path (BackendSet.where). Health
// probes use path=/health, which no session uses.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  assertOneLineReason,
  checkConfig,
  deadPort,
  openWs,
  startNodeWsBackend,
  startTether,
  withTimeout,
  settleAll,
} from './lib/harness.mjs';
import { BackendSet, TRANSPORTS, cookiePair, inBatches, mustOpen, openSession } from './lib/routing.mjs';
import { prng, shuffled, testSeed } from './lib/transports.mjs';

const TEST_TIMEOUT = 30_000;
const CONCURRENCY = 32;
const run = randomBytes(3).toString('hex'); // keeps paths and keys of one run apart

const seed = testSeed();
console.log(`routing.test.mjs: TETHER_TEST_SEED=${seed}`);
const rand = prng(seed);

/** `server 127.0.0.1:PORT PARAMS;` lines for an upstream block. */
function servers(ports, params = []) {
  return ports.map((p, i) => `    server 127.0.0.1:${p}${params[i] ? ` ${params[i]}` : ''};`).join('\n');
}

/** Asserts a 502 outcome of openSession as a one-line plain-text reason. */
function assert502(outcome, what) {
  const res = {
    status: outcome.status,
    headers: outcome.headers ?? {},
    body: outcome.body ?? '',
    rawHead: outcome.rawHead ?? `HTTP/1.1 ${outcome.status}\r\n${JSON.stringify(outcome.headers)}`,
  };
  assertOneLineReason(res, 502, what);
}

/** Counts of `indexes` per backend index (0..n-1). */
function tally(indexes, n) {
  const counts = new Array(n).fill(0);
  for (const i of indexes) counts[i]++;
  return counts;
}

/** Health probes (health_check path=/health) are no sessions. */
const isProbe = (path) => path.startsWith('/health');

/** tether's health-check lines so far, for failure messages (a probe timing out on a busy host). */
const healthLog = (tether) => `\nhealth checks so far:\n${tether.stderrLines.filter((l) => l.includes('(health check')).join('\n') || '(none)'}`;

const SET_COOKIE_RE = (name, path = '/', maxAge) =>
  new RegExp(`^${name}=([^;\\s]+); Path=${path.replace(/[/.]/g, '\\$&')}; HttpOnly; SameSite=Lax${maxAge !== undefined ? `; Max-Age=${maxAge}` : ''}$`);

// -------------------------------------------------------------------------------------------
// (a) Sticky keys over all three transports

describe('sticky routing: the same key reaches the same backend on every transport', () => {
  let set;
  let tether;

  before(async () => {
    set = await BackendSet.start(3);
    const pool = servers(set.ports);
    tether = await startTether(`
error_log stderr notice;
upstream ck {
${pool}
    sticky cookie tether_route;
}
upstream ck2 {
${pool}
    sticky cookie route2 expire=1h path=/ck2/;
}
upstream hd {
${pool}
    sticky header X-User-Id;
}
upstream ip {
${pool}
    sticky ip;
    stick_table size=1000 expire=10m;
}
upstream qr {
${pool}
    sticky query user;
}
upstream lru {
${pool}
    sticky header X-K;
    stick_table size=2 expire=30m;
}
server {
    listen 127.0.0.1:0;
    tether_session_linger 10s;
    location /ck/ { tether_pass ws://ck; }
    location /ck2/ { tether_pass ws://ck2; }
    location /hd/ { tether_pass ws://hd; }
    location /ip/ { tether_pass ws://ip; }
    location /qr/ { tether_pass ws://qr; }
    location /lru/ { tether_pass ws://lru; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), set?.close()]);
  });

  const KEYS = 40;
  const PER_KEY = 25; // 1,000 sessions per kind of key

  /**
   * KEYS users of one kind of key, PER_KEY sessions each, over WebSocket, SSE and poll (each user
   * on all three). First every user's first session (users in parallel), so that each key is
   * stuck before its later sessions, which then run PER_KEY-1 per user, shuffled, in parallel.
   * `request(user, n)` → { path, headers, localAddress } of the user's n-th session.
   * Returns { users, byTransport, firstSetCookies: {transport: [..]} }.
   */
  async function stickyRun(kind, request, { cookie } = {}) {
    const users = Array.from({ length: KEYS }, (_, i) => ({ i, backend: undefined, cookie: undefined }));
    const byTransport = { ws: 0, sse: 0, poll: 0 };
    const firstSetCookies = { ws: [], sse: [], poll: [] };
    const wrong = [];

    const one = async (u, n) => {
      const transport = TRANSPORTS[(u.i + n) % 3];
      const req = request(u, n);
      const s = await mustOpen(transport, { port: tether.port, ...req });
      byTransport[transport]++;
      try {
        const got = await set.where(req.path);
        if (n === 0) {
          u.backend = got;
          if (cookie) {
            firstSetCookies[transport].push(...s.setCookies);
            assert.equal(s.setCookies.length, 1, `${transport}: a user without the cookie gets one Set-Cookie: ${JSON.stringify(s.setCookies)}`);
            assert.match(s.setCookies[0], SET_COOKIE_RE(cookie), `${transport}: the minted cookie`);
            u.cookie = cookiePair(s.setCookies[0]);
          } else {
            assert.deepEqual(s.setCookies, [], `${transport}: sticky ${kind} sets no cookie`);
          }
        } else {
          assert.deepEqual(s.setCookies, [], `${transport}: session ${n} of ${kind} user ${u.i} (${JSON.stringify(req.headers)}) got a Set-Cookie`);
          if (got !== u.backend) wrong.push(`user ${u.i} session ${n} (${transport}) on backend ${got}, first on ${u.backend}`);
        }
      } finally {
        await s.close();
      }
    };

    await inBatches(users, KEYS, (u) => one(u, 0));
    const later = [];
    for (const u of users) for (let n = 1; n < PER_KEY; n++) later.push({ u, n });
    await inBatches(shuffled(later, rand), CONCURRENCY, ({ u, n }) => one(u, n));

    assert.deepEqual(wrong, [], `sticky ${kind}: every session of a key on its key's backend`);
    assert.equal(byTransport.ws + byTransport.sse + byTransport.poll, KEYS * PER_KEY);
    for (const t of TRANSPORTS) assert.ok(byTransport[t] >= 300, `sticky ${kind}: ${byTransport[t]} ${t} sessions`);
    const spread = tally(users.map((u) => u.backend), 3);
    assert.ok(spread.filter((c) => c > 0).length > 1, `sticky ${kind}: the keys spread over more than one backend: ${spread}`);
    assert.deepEqual(set.duplicates, [], 'every session reached exactly one backend once');
    return { users, byTransport, firstSetCookies, spread };
  }

  test('cookie: Set-Cookie on the first session (101, SSE head, poll open), the cookie sticks 1,000 sessions', { timeout: TEST_TIMEOUT }, async () => {
    const { users, firstSetCookies } = await stickyRun(
      'cookie',
      (u, n) => ({
        path: `/ck/${run}-c${u.i}-${n}`,
        headers: n === 0 ? {} : { Cookie: `other=1; ${u.cookie}; more=2` },
      }),
      { cookie: 'tether_route' },
    );
    for (const t of TRANSPORTS) assert.ok(firstSetCookies[t].length >= 1, `a Set-Cookie was seen on ${t}`);
    const values = new Set(users.map((u) => u.cookie));
    assert.equal(values.size, KEYS, 'every new user got a cookie of its own');
  });

  test('cookie attributes: expire=1h path=/ck2/ → Max-Age=3600 and Path=/ck2/', { timeout: TEST_TIMEOUT }, async () => {
    for (const transport of TRANSPORTS) {
      const s = await mustOpen(transport, { port: tether.port, path: `/ck2/${run}-attr-${transport}` });
      try {
        assert.equal(s.setCookies.length, 1, `${transport}: ${JSON.stringify(s.setCookies)}`);
        assert.match(s.setCookies[0], SET_COOKIE_RE('route2', '/ck2/', 3600), transport);
      } finally {
        await s.close();
      }
      // With the cookie: no new one.
      const again = await mustOpen(transport, {
        port: tether.port,
        path: `/ck2/${run}-attr-${transport}-again`,
        headers: { Cookie: cookiePair(s.setCookies[0]) },
      });
      await again.close();
      assert.deepEqual(again.setCookies, [], `${transport}: a client that has the cookie gets no Set-Cookie`);
      assert.equal(
        await set.where(`/ck2/${run}-attr-${transport}-again`),
        await set.where(`/ck2/${run}-attr-${transport}`),
        `${transport}: the cookie's second session reaches the first one's backend`,
      );
    }
  });

  test('header: the same X-User-Id reaches the same backend for 1,000 sessions', { timeout: TEST_TIMEOUT }, async () => {
    await stickyRun('header', (u, n) => ({ path: `/hd/${run}-h${u.i}-${n}`, headers: { 'X-User-Id': `user-${run}-${u.i}` } }));
  });

  test('ip: the same client address reaches the same backend for 1,000 sessions', { timeout: TEST_TIMEOUT }, async () => {
    await stickyRun('ip', (u, n) => ({ path: `/ip/${run}-i${u.i}-${n}`, localAddress: `127.0.0.${2 + u.i}` }));
  });

  test('query: the same ?user= reaches the same backend for 1,000 sessions', { timeout: TEST_TIMEOUT }, async () => {
    await stickyRun('query', (u, n) => ({ path: `/qr/${run}-q${u.i}-${n}?user=u${u.i}x${run}&n=${n}` }));
  });

  test('no key → balance: sessions without the header go round robin (10 on each of 3)', { timeout: TEST_TIMEOUT }, async () => {
    const got = [];
    for (let n = 0; n < 30; n++) {
      const path = `/hd/${run}-nokey-${n}`;
      const s = await mustOpen(TRANSPORTS[n % 3], { port: tether.port, path });
      got.push(await set.where(path));
      await s.close();
    }
    assert.deepEqual(tally(got, 3), [10, 10, 10], `backends in order: ${got.join(' ')}`);
  });

  test('the stick table is bounded: size=2 keeps the two most recently used keys', { timeout: TEST_TIMEOUT }, async () => {
    let n = 0;
    const visit = async (key) => {
      const path = `/lru/${run}-${key}-${n++}`;
      const s = await mustOpen('ws', { port: tether.port, path, headers: { 'X-K': `${run}-${key}` } });
      await s.close();
      return set.where(path);
    };
    const k1 = await visit('k1');
    const k2 = await visit('k2');
    assert.notEqual(k2, k1, 'two new keys in a row go to two servers (round robin)');
    assert.equal(await visit('k1'), k1, 'k1 is stuck');
    await visit('k3'); // the table is full: k2, the least recently used, goes
    assert.equal(await visit('k1'), k1, 'k1, used recently, is still stuck');
    assert.notEqual(await visit('k2'), k2, 'k2 was evicted: balance sent it to the next server in turn');
  });
});

// -------------------------------------------------------------------------------------------
// (b) Spread by weight

describe('balance: the spread by weight', () => {
  let set;
  let tether;
  const WEIGHTS = [1, 2, 3];
  const SESSIONS = 3000;
  let hashUpstream;

  before(async () => {
    set = await BackendSet.start(3);
    hashUpstream = `
upstream wh {
${servers(set.ports, WEIGHTS.map((w) => `weight=${w}`))}
    balance hash;
    sticky query user;
}`;
    tether = await startTether(`
error_log stderr notice;
upstream wrr {
${servers(set.ports, WEIGHTS.map((w) => `weight=${w}`))}
    balance round_robin;
}
${hashUpstream}
server {
    listen 127.0.0.1:0;
    location /wrr/ { tether_pass ws://wrr; }
    location /wh/ { tether_pass ws://wh; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), set?.close()]);
  });

  /** Opens and closes `count` sessions made by req(k) on `port`; returns the backend index of each. */
  function spread(port, count, req) {
    return inBatches(Array.from({ length: count }, (_, k) => k), CONCURRENCY, async (k) => {
      const { path } = req(k);
      const s = await mustOpen(TRANSPORTS[k % 3], { port, path });
      try {
        return await set.where(path);
      } finally {
        await s.close();
      }
    });
  }

  test('round_robin with weights 1, 2, 3: 3,000 sessions split 500/1000/1500 (±2% each)', { timeout: TEST_TIMEOUT }, async () => {
    const got = tally(await spread(tether.port, SESSIONS, (k) => ({ path: `/wrr/${run}-${k}` })), 3);
    const total = WEIGHTS.reduce((a, b) => a + b, 0);
    for (let i = 0; i < 3; i++) {
      const expected = (SESSIONS * WEIGHTS[i]) / total;
      assert.ok(Math.abs(got[i] - expected) <= expected * 0.02, `backend ${i} (weight ${WEIGHTS[i]}) got ${got[i]} of ${SESSIONS}, expected ${expected} ±2%: ${got}`);
    }
  });

  test('hash with weights 1, 2, 3: 3,000 distinct keys split 1/6, 2/6, 3/6 (±5 points)', { timeout: TEST_TIMEOUT }, async () => {
    const got = tally(await spread(tether.port, SESSIONS, (k) => ({ path: `/wh/${run}-${k}?user=key-${run}-${k}` })), 3);
    const total = WEIGHTS.reduce((a, b) => a + b, 0);
    for (let i = 0; i < 3; i++) {
      const share = got[i] / SESSIONS;
      const expected = WEIGHTS[i] / total;
      assert.ok(Math.abs(share - expected) <= 0.05, `backend ${i} (weight ${WEIGHTS[i]}) got ${got[i]} of ${SESSIONS} (${(share * 100).toFixed(1)}%), expected ${(expected * 100).toFixed(1)}% ±5 points: ${got}`);
    }
  });

  test('hash: independent tethers with the same servers agree on every key; removing a server moves only its keys', { timeout: TEST_TIMEOUT }, async () => {
    // A second tether with the same upstream, a third without server 1.
    const loc = 'server {\n    listen 127.0.0.1:0;\n    location /wh/ { tether_pass ws://wh; }\n}\n';
    const other = await startTether(`error_log stderr notice;\n${hashUpstream}\n${loc}`);
    const without1 = await startTether(`error_log stderr notice;
upstream wh {
${servers([set.ports[0], set.ports[2]], [`weight=${WEIGHTS[0]}`, `weight=${WEIGHTS[2]}`])}
    balance hash;
    sticky query user;
}
${loc}`);
    try {
      const keys = Array.from({ length: 300 }, (_, k) => `agree-${run}-${k}`);
      const where = (port, tag) => (key) =>
        (async () => {
          const path = `/wh/${run}-${tag}-${key}?user=${key}`;
          const s = await mustOpen('ws', { port, path });
          try {
            return await set.where(path);
          } finally {
            await s.close();
          }
        })();
      const first = await inBatches(keys, CONCURRENCY, where(tether.port, 't1'));
      const second = await inBatches(keys, CONCURRENCY, where(other.port, 't2'));
      const third = await inBatches(keys, CONCURRENCY, where(without1.port, 't3'));
      const disagree = [];
      for (let i = 0; i < keys.length; i++) if (first[i] !== second[i]) disagree.push(`${keys[i]}: ${first[i]} vs ${second[i]}`);
      assert.deepEqual(disagree, [], 'two tethers with the same upstream send each key to the same backend');
      const counts = tally(first, 3);
      assert.ok(counts.every((c) => c > 0), `the keys spread over all three backends: ${counts}`);
      const movedWrongly = [];
      for (let i = 0; i < keys.length; i++) {
        if (first[i] !== 1 && third[i] !== first[i]) movedWrongly.push(`${keys[i]}: ${first[i]} → ${third[i]}`);
        if (first[i] === 1) assert.ok(third[i] === 0 || third[i] === 2, `${keys[i]} of the removed server went to ${third[i]}`);
      }
      assert.deepEqual(movedWrongly, [], 'removing server 1 moves only the keys that were on it');
    } finally {
      await settleAll([other.stop(), without1.stop()]);
    }
  });
});

// -------------------------------------------------------------------------------------------
// (c) A backend dies and comes back

describe('failover of sticky users: a backend dies, its users move, it comes back', () => {
  let set;
  let tether;
  const B = 1;

  before(async () => {
    set = await BackendSet.start(3, { ignore: isProbe });
    tether = await startTether(`
error_log stderr info;
upstream hc {
${servers(set.ports, ['max_fails=1 fail_timeout=1s', 'max_fails=1 fail_timeout=1s', 'max_fails=1 fail_timeout=1s'])}
    sticky cookie tr;
    health_check interval=100ms path=/health;
}
server {
    listen 127.0.0.1:0;
    tether_session_linger 10s;
    location /hc/ { tether_pass ws://hc; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), set?.close()]);
  });

  test('killing a backend moves only its users; live sessions elsewhere are untouched; restarted, it takes new users', { timeout: 45_000 }, async () => {
    const base = `ws://127.0.0.1:${tether.port}`;
    const upstreamLog = (port, state) => (l) => l.includes(`upstream server 127.0.0.1:${port} of "hc" is ${state} (health check`);
    const pb = set.ports[B];
    const USERS = 30;
    const users = [];
    // Live WebSocket sessions, one per user; each new user gets its cookie on the 101.
    for (let i = 0; i < USERS; i++) {
      const path = `/hc/${run}-u${i}-live`;
      const live = await openWs(`${base}${path}`);
      const cookies = [].concat(live.upgrade.headers['set-cookie'] ?? []);
      assert.equal(cookies.length, 1, `user ${i}: one Set-Cookie on the 101: ${JSON.stringify(cookies)}`);
      assert.match(cookies[0], SET_COOKIE_RE('tr'));
      users.push({ i, live, cookie: cookiePair(cookies[0]), backend: await set.where(path) });
    }
    const counts = tally(users.map((u) => u.backend), 3);
    assert.ok(counts.every((c) => c > 0), `the users spread over all three backends: ${counts}`);
    const onB = users.filter((u) => u.backend === B);
    const elsewhere = users.filter((u) => u.backend !== B);

    const session = async (u, tag, transport = 'ws') => {
      const path = `/hc/${run}-u${u.i}-${tag}`;
      const s = await mustOpen(transport, { port: tether.port, path, headers: { Cookie: u.cookie } });
      try {
        assert.deepEqual(s.setCookies, [], `user ${u.i} has its cookie: no Set-Cookie`);
        return await set.where(path);
      } finally {
        await s.close();
      }
    };

    // B dies: its clients are cut (their sessions end), its port refuses.
    const mark = tether.stderrLines.length;
    await set.backends[B].close();
    await Promise.all(onB.map((u) => withTimeout(u.live.closed, 10_000, `user ${u.i}'s live session on B to end`)));
    await tether.waitStderrFrom(mark, upstreamLog(pb, 'down'), `the health check to log 127.0.0.1:${pb} down`);

    // The live sessions on A and C are untouched.
    for (const u of elsewhere) {
      assert.equal(u.live.ws.readyState, u.live.ws.OPEN, `user ${u.i}'s live session on backend ${u.backend} is open`);
      u.live.ws.send(`still there ${u.i}`);
      assert.equal((await u.live.next()).data.toString(), `still there ${u.i}`, `user ${u.i}'s live session echoes`);
    }

    // New sessions: users of A and C stay; users of B move to A or C, and stay there.
    for (const u of users) {
      const got = await session(u, 'after', TRANSPORTS[u.i % 3]);
      if (u.backend === B) {
        assert.notEqual(got, B, `user ${u.i} of B`);
        u.moved = got;
      } else {
        assert.equal(got, u.backend, `user ${u.i} of backend ${u.backend} stays there${healthLog(tether)}`);
      }
    }
    for (const u of onB) {
      assert.equal(await session(u, 'again', TRANSPORTS[(u.i + 1) % 3]), u.moved, `user ${u.i} moved from B is re-stuck${healthLog(tether)}`);
    }

    // B comes back on its port.
    const mark2 = tether.stderrLines.length;
    set.replace(B, await startNodeWsBackend({ port: pb }));
    await tether.waitStderrFrom(mark2, upstreamLog(pb, 'up'), `the health check to log 127.0.0.1:${pb} up`);

    // New users reach B again.
    let reachedB = false;
    for (let j = 0; j < 30 && !reachedB; j++) {
      const path = `/hc/${run}-new${j}`;
      const s = await mustOpen(TRANSPORTS[j % 3], { port: tether.port, path });
      try {
        assert.equal(s.setCookies.length, 1, `new user ${j} gets a cookie`);
        reachedB = (await set.where(path)) === B;
      } finally {
        await s.close();
      }
    }
    assert.ok(reachedB, 'a new user reached the restarted backend within 30 new users');

    // Moved users stay where they were re-stuck; the others where they were.
    for (const u of users) {
      const got = await session(u, 'later', TRANSPORTS[(u.i + 2) % 3]);
      assert.equal(got, u.backend === B ? u.moved : u.backend, `user ${u.i} after B came back${healthLog(tether)}`);
    }

    for (const u of elsewhere) {
      u.live.ws.close(1000);
      await withTimeout(u.live.closed, 10_000, 'a live session to close');
    }
    assert.deepEqual(set.duplicates, []);
  });
});

// -------------------------------------------------------------------------------------------
// (d) Failover within a request

describe('failover within a request (tether_next_upstream)', () => {
  let set; // one live backend
  let refusing; // answers every handshake 401
  let refusals = 0;
  let silent; // accepts TCP, never answers
  const silentSockets = new Set();
  let silentAccepted = 0;
  let dead;
  let dead2;
  let singlePort;
  let single; // started during the test on singlePort
  let tether;

  before(async () => {
    set = await BackendSet.start(1);
    refusing = await startNodeWsBackend({
      verifyClient: () => {
        refusals++;
        return false;
      },
    });
    silent = net.createServer((s) => {
      silentAccepted++;
      silentSockets.add(s);
      s.on('close', () => silentSockets.delete(s));
      s.on('error', () => {});
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    dead = await deadPort();
    dead2 = await deadPort();
    singlePort = await deadPort();
    const live = set.ports[0];
    tether = await startTether(`
error_log stderr info;
upstream fo3 {
    server 127.0.0.1:${dead};
    server 127.0.0.1:${live};
}
upstream mixed {
    server 127.0.0.1:${dead};
    server 127.0.0.1:${refusing.port};
    server 127.0.0.1:${silent.address().port};
    server 127.0.0.1:${live};
}
upstream fo1 {
    server 127.0.0.1:${dead};
    server 127.0.0.1:${live};
}
upstream alldead {
    server 127.0.0.1:${dead};
    server 127.0.0.1:${dead2};
}
upstream single {
    server 127.0.0.1:${singlePort} max_fails=1 fail_timeout=10s;
}
server {
    listen 127.0.0.1:0;
    tether_connect_timeout 300ms;
    location /fo3/ { tether_pass ws://fo3; }
    location /mixed/ { tether_pass ws://mixed; tether_next_upstream tries=4; }
    location /fo1/ { tether_pass ws://fo1; tether_next_upstream tries=1; }
    location /alldead/ { tether_pass ws://alldead; }
    location /single/ { tether_pass ws://single; }
}
`);
  });

  after(async () => {
    for (const s of silentSockets) s.destroy();
    await settleAll([
      tether?.stop(),
      set?.close(),
      refusing?.close(),
      single?.close(),
      new Promise((resolve) => silent.close(resolve)),
    ]);
  });

  test('a dead server and a live one, default tries: 20 new sessions all open, on the live one', { timeout: TEST_TIMEOUT }, async () => {
    const got = await inBatches(Array.from({ length: 20 }, (_, k) => k), 20, async (k) => {
      const path = `/fo3/${run}-${k}`;
      const s = await openSession(TRANSPORTS[k % 3], { port: tether.port, path });
      assert.ok(s.ok, `session ${k} (${TRANSPORTS[k % 3]}): ${s.status} ${JSON.stringify(s.body)}`);
      try {
        return await set.where(path);
      } finally {
        await s.close();
      }
    });
    assert.deepEqual(tally(got, 1), [20]);
  });

  test('refused, handshake refused, handshake timeout: each retried on the next server (tries=4)', { timeout: TEST_TIMEOUT }, async () => {
    const got = await inBatches(Array.from({ length: 20 }, (_, k) => k), 20, async (k) => {
      const path = `/mixed/${run}-${k}`;
      const s = await openSession(TRANSPORTS[k % 3], { port: tether.port, path });
      assert.ok(s.ok, `session ${k} (${TRANSPORTS[k % 3]}): ${s.status} ${JSON.stringify(s.body)}`);
      try {
        return await set.where(path);
      } finally {
        await s.close();
      }
    });
    assert.deepEqual(tally(got, 1), [20]);
    // Round robin reaches each server before any is marked failed, so each failure was met.
    assert.ok(refusals >= 1, 'the server that refuses the handshake was tried');
    assert.ok(silentAccepted >= 1, 'the server that never answers the handshake was tried');
  });

  test('tries=1: when the dead server is picked the client gets 502; the others open', { timeout: TEST_TIMEOUT }, async () => {
    const failed = [];
    for (let k = 0; k < 4; k++) {
      const path = `/fo1/${run}-${k}`;
      const s = await openSession(TRANSPORTS[k % 3], { port: tether.port, path });
      if (!s.ok) {
        assert502(s, `session ${k} (${TRANSPORTS[k % 3]})`);
        assert.match(s.body, new RegExp(`connect\\(\\) to 127\\.0\\.0\\.1:${dead} failed`), 'the 502 names the failed connect');
        failed.push(k);
        continue;
      }
      try {
        assert.equal(await set.where(path), 0);
      } finally {
        await s.close();
      }
    }
    assert.ok(failed.length >= 1, 'with one try, picking the dead server is a 502 (round robin picks it within two sessions)');
  });

  test('all servers dead: 502 naming the upstream or the connect() error, on every transport', { timeout: TEST_TIMEOUT }, async () => {
    const bodies = [];
    for (const transport of [...TRANSPORTS, ...TRANSPORTS]) {
      const s = await openSession(transport, { port: tether.port, path: `/alldead/${run}-${transport}` });
      assert.equal(s.ok, false, `${transport}: opened with every server dead`);
      assert502(s, transport);
      assert.match(s.body, new RegExp(`no live servers in upstream "alldead"|connect\\(\\) to 127\\.0\\.0\\.1:(${dead}|${dead2}) failed`), `${transport}: ${s.body}`);
      bodies.push(s.body);
    }
    assert.ok(
      bodies.slice(1).some((b) => b.includes('no live servers in upstream "alldead"')),
      `once both failed (max_fails=1, fail_timeout=10s), the 502 names the upstream: ${JSON.stringify(bodies)}`,
    );
  });

  test('a lone server is never marked down: it is tried again at once when it comes up', { timeout: TEST_TIMEOUT }, async () => {
    for (let k = 0; k < 3; k++) {
      const s = await openSession(TRANSPORTS[k], { port: tether.port, path: `/single/${run}-${k}` });
      assert502(s, `lone dead server, try ${k}`);
      assert.match(s.body, new RegExp(`connect\\(\\) to 127\\.0\\.0\\.1:${singlePort} failed`), `try ${k}: the connect error, not "no live servers": ${s.body}`);
    }
    single = await startNodeWsBackend({ port: singlePort });
    const path = `/single/${run}-up`;
    const s = await mustOpen('ws', { port: tether.port, path });
    await single.waitConnection((c) => c.path === path);
    await s.close();
  });
});

// -------------------------------------------------------------------------------------------
// (e) Backup and down servers

describe('backup and down servers', () => {
  let set; // 0, 1: primaries; 2: backup; 3: down
  let tether;

  before(async () => {
    set = await BackendSet.start(4, { ignore: isProbe });
    tether = await startTether(`
error_log stderr info;
upstream bk {
${servers(set.ports, ['', '', 'backup', 'down'])}
    health_check interval=100ms path=/health;
}
server {
    listen 127.0.0.1:0;
    location /bk/ { tether_pass ws://bk; }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), set?.close()]);
  });

  test('the backup takes sessions only while no primary is usable; a down server never', { timeout: TEST_TIMEOUT }, async () => {
    let n = 0;
    const batch = async (count) =>
      tally(
        await inBatches(Array.from({ length: count }, () => n++), 8, async (k) => {
          const path = `/bk/${run}-${k}`;
          const s = await mustOpen(TRANSPORTS[k % 3], { port: tether.port, path });
          try {
            return await set.where(path);
          } finally {
            await s.close();
          }
        }),
        4,
      );
    const log = (i, state) => (l) => l.includes(`upstream server 127.0.0.1:${set.ports[i]} of "bk" is ${state} (health check`);

    const primariesOnly = (counts, what) => {
      assert.ok(counts[0] > 0 && counts[1] > 0 && counts[2] === 0 && counts[3] === 0, `${what}: ${counts}${healthLog(tether)}`);
    };
    primariesOnly(await batch(12), 'both primaries up: both take sessions, the backup and the down server none');

    let mark = tether.stderrLines.length;
    const p0 = set.ports[0];
    await set.backends[0].close();
    await tether.waitStderrFrom(mark, log(0, 'down'), 'primary 0 down (health check)');
    assert.deepEqual(await batch(9), [0, 9, 0, 0], `one primary left: it takes everything, the backup still unused${healthLog(tether)}`);

    mark = tether.stderrLines.length;
    const p1 = set.ports[1];
    await set.backends[1].close();
    await tether.waitStderrFrom(mark, log(1, 'down'), 'primary 1 down (health check)');
    assert.deepEqual(await batch(9), [0, 0, 9, 0], `no primary usable: the backup takes everything, the down server nothing${healthLog(tether)}`);

    mark = tether.stderrLines.length;
    set.replace(0, await startNodeWsBackend({ port: p0 }));
    set.replace(1, await startNodeWsBackend({ port: p1 }));
    await tether.waitStderrFrom(mark, log(0, 'up'), 'primary 0 up (health check)');
    await tether.waitStderrFrom(mark, log(1, 'up'), 'primary 1 up (health check)');
    primariesOnly(await batch(12), 'primaries back: the backup is unused again');

    assert.equal(set.count(3, '/bk/'), 0, 'the down server never got a session');
    assert.deepEqual(set.duplicates, []);
  });
});

// -------------------------------------------------------------------------------------------
// (f) Config errors

describe('tether -t: routing directives', () => {
  /** A config with `upstreamBody` in upstream u and `locationExtra` in its location; line of `marker`. */
  function conf(upstreamBody, locationExtra = '') {
    return `error_log stderr info;
upstream u {
${upstreamBody}
}
server {
    listen 127.0.0.1:0;
    location / {
        tether_pass ws://u;
${locationExtra}
    }
}
`;
  }
  const lineOf = (text, needle) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

  test('a config with every routing directive passes', { timeout: TEST_TIMEOUT }, async () => {
    const text = conf(
      `    server 127.0.0.1:9001 weight=2 max_fails=3 fail_timeout=10s;
    server 127.0.0.1:9002;
    server 127.0.0.1:9003 backup;
    server 127.0.0.1:9004 down;
    balance least_conn;
    sticky cookie tether_route expire=1h path=/;
    stick_table size=100k expire=30m;
    health_check interval=5s path=/health;`,
      '        tether_next_upstream tries=2;',
    );
    const r = await checkConfig(text);
    assert.equal(r.code, 0, `exit code ${r.code}\n${r.stderr}\n${text}`);
    assert.ok(r.stderr.includes(`configuration file ${r.file} test is successful`), r.stderr);
    for (const variant of ['balance round_robin;', 'balance hash;', 'sticky header X-User-Id;', 'sticky ip;', 'sticky query user;']) {
      const v = await checkConfig(conf(`    server 127.0.0.1:9001;\n    server 127.0.0.1:9002;\n    ${variant}`));
      assert.equal(v.code, 0, `${variant}: exit code ${v.code}\n${v.stderr}`);
    }
  });

  // nginx's words (README): `invalid value "ARG" in "NAME" directive[, why] in FILE:LINE`; the
  // quoted value may be the whole argument or its value part.
  const cases = [
    { what: 'balance fastest', body: '    server 127.0.0.1:9001;\n    balance fastest;', needle: 'balance fastest', message: /invalid value "fastest" in "balance" directive/ },
    { what: 'weight=0', body: '    server 127.0.0.1:1 weight=0;', needle: 'weight=0', message: /invalid value "(weight=)?0" in "server" directive/ },
    { what: 'sticky cookie without a name', body: '    server 127.0.0.1:9001;\n    sticky cookie;', needle: 'sticky cookie', message: /invalid number of arguments in "sticky" directive/ },
    { what: 'stick_table size=0', body: '    server 127.0.0.1:9001;\n    sticky ip;\n    stick_table size=0;', needle: 'stick_table', message: /invalid value "(size=)?0" in "stick_table" directive/ },
    { what: 'tether_next_upstream tries=0', body: '    server 127.0.0.1:9001;', extra: '        tether_next_upstream tries=0;', needle: 'tether_next_upstream', message: /invalid value "(tries=)?0" in "tether_next_upstream" directive/ },
    { what: 'health_check interval=abc', body: '    server 127.0.0.1:9001;\n    health_check interval=abc;', needle: 'health_check', message: /invalid value "(interval=)?abc" in "health_check" directive/ },
  ];
  for (const c of cases) {
    test(`${c.what} → exit 1, naming the directive and file:line`, { timeout: TEST_TIMEOUT }, async () => {
      const text = conf(c.body, c.extra ?? '');
      const line = lineOf(text, c.needle);
      const r = await checkConfig(text);
      assert.equal(r.code, 1, `exit code ${r.code}\n${r.stderr}`);
      // The message and the place, on one line.
      const own = r.stderr.split('\n').find((l) => c.message.test(l));
      assert.ok(own, `stderr lacks ${c.message}:\n${r.stderr}`);
      assert.ok(own.endsWith(` in ${r.file}:${line}`), `the error does not end with " in ${r.file}:${line}": ${own}`);
      assert.match(own, /\[emerg\]/);
    });
  }

  test('a server listed twice → exit 1, naming it and file:line', { timeout: TEST_TIMEOUT }, async () => {
    const text = conf('    server 127.0.0.1:9001;\n    server 127.0.0.1:9002;\n    server 127.0.0.1:9001 weight=2;');
    const r = await checkConfig(text);
    assert.equal(r.code, 1, `exit code ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /\bserver\b[^\n]*127\.0\.0\.1:9001/, `the error names the server:\n${r.stderr}`);
    // The line of the repeated server, or of the upstream block that has it twice.
    const lines = [lineOf(text, '127.0.0.1:9001 weight=2'), lineOf(text, 'upstream u')];
    assert.ok(lines.some((l) => r.stderr.includes(`${r.file}:${l}`)), `stderr names none of ${lines.map((l) => `${r.file}:${l}`).join(', ')}:\n${r.stderr}`);
  });
});
