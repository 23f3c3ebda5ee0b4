// Send (POST, client → backend) and DELETE of the edge protocol: Node's built-in fetch and raw
// sockets as clients, a Node `ws` backend recording what it receives.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { assertOneLineReason, rawRequest, startNodeWsBackend, startTether, withTimeout, settleAll } from './lib/harness.mjs';
import {
  assertFdLimit,
  assertNoContent,
  assertSseHead,
  backendClosed,
  del,
  openSse,
  pollOpen,
  prng,
  randInt,
  readOpen,
  roundTrip,
  send,
  shuffled,
  startRequest,
  testSeed,
  unknownSid,
  waitBackendMessages,
  withQuery,
} from './lib/transports.mjs';

const TEST_TIMEOUT = 30_000;
const tag = (name) => `${name}-${randomBytes(4).toString('hex')}`;
const texts = (conn) => conn.messages.map((m) => (m.isBinary ? `<binary ${m.data.toString('hex')}>` : m.data.toString('utf8')));

describe('send (POST) and DELETE', () => {
  let backend; // Node ws, no echo: it records what arrives
  let tether;
  let http;

  before(async () => {
    backend = await startNodeWsBackend({ echo: false });
    const pass = `tether_pass ws://127.0.0.1:${backend.port};`;
    tether = await startTether(`
error_log stderr info;
max_connections_per_client 5000;  # 1,000 concurrent POSTs from one address, beyond the default
server {
    listen 127.0.0.1:0;
    client_max_body_size 64k;
    location /app/ { ${pass} tether_session_linger 10s; }
    location /small/ { ${pass} tether_session_linger 10s; tether_max_message 1k; tether_buffer 100 64k; }
}
`);
    http = `http://127.0.0.1:${tether.port}`;
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close()]);
  });

  /** A new poll session at `path` and its backend connection. */
  async function session(path) {
    const url = `${http}${path}`;
    const { sid } = await pollOpen(url);
    const conn = await backend.waitConnection((c) => c.path === path);
    return { url, path, sid, conn };
  }

  /** Raw POST of `body` with seq, written before this resolves (see startRequest). */
  function startPost(path, sid, seq, body, headers = { 'Content-Type': 'text/plain; charset=utf-8' }) {
    return startRequest(tether.port, withQuery(path, { 'tether-session': sid, 'tether-seq': seq }), {
      method: 'POST',
      headers,
      body,
    });
  }

  test('text and binary POSTs reach the backend as text and binary frames', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/app/${tag('types')}`);
    const bin = Buffer.from([0, 0xff, 1, 0xfe, 0x0a]);
    assertNoContent(await send(url, sid, 1, 'héllo ✓ 𝄞'), 'text/plain');
    assertNoContent(await send(url, sid, 2, bin, { binary: true }), 'application/octet-stream');
    assertNoContent(await send(url, sid, 3, '{"a":1}', { contentType: 'application/json' }), 'application/json');
    assertNoContent(await send(url, sid, 4, 'line 1\r\nline 2\n', { contentType: 'text/plain' }), 'multi-line text');
    await waitBackendMessages(conn, 4);
    assert.deepEqual(
      conn.messages.map((m) => m.isBinary),
      [false, true, false, false],
      'only application/octet-stream makes a binary frame',
    );
    assert.equal(conn.messages[0].data.toString('utf8'), 'héllo ✓ 𝄞');
    assert.ok(conn.messages[1].data.equals(bin), 'binary body altered');
    assert.equal(conn.messages[2].data.toString('utf8'), '{"a":1}');
    assert.equal(conn.messages[3].data.toString('utf8'), 'line 1\r\nline 2\n', 'a POSTed text is one message, unsplit');
  });

  test('a repeated seq that was already forwarded gets 204 and is not sent again', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/app/${tag('repeat')}`);
    assertNoContent(await send(url, sid, 1, 'a'), 'seq 1');
    assertNoContent(await send(url, sid, 1, 'a'), 'seq 1 again');
    assertNoContent(await send(url, sid, 2, 'b'), 'seq 2');
    assertNoContent(await send(url, sid, 1, 'a'), 'seq 1 a third time');
    assertNoContent(await send(url, sid, 3, 'c'), 'seq 3');
    await waitBackendMessages(conn, 3);
    assert.deepEqual(texts(conn), ['a', 'b', 'c']);
  });

  test('early seqs are held until the gap fills; a seq repeated while held is answered with it and sent once', { timeout: TEST_TIMEOUT }, async () => {
    const { url, path, sid, conn } = await session(`/app/${tag('held')}`);
    const p3 = await startPost(path, sid, 3, 'three');
    const p3again = await startPost(path, sid, 3, 'three');
    const p2 = await startPost(path, sid, 2, 'two');
    await roundTrip(tether.port); // tether has read all three POSTs
    for (const [name, p] of [['seq 3', p3], ['seq 3 again', p3again], ['seq 2', p2]]) {
      assert.equal(p.answered(), false, `${name} was answered before seq 1 came`);
    }
    assert.deepEqual(texts(conn), [], 'an early seq was forwarded before the gap filled');

    assertNoContent(await send(url, sid, 1, 'one'), 'seq 1');
    for (const [name, p] of [['seq 3', p3], ['seq 3 again', p3again], ['seq 2', p2]]) {
      assertNoContent(await p.response, name);
    }
    assertNoContent(await send(url, sid, 4, 'four'), 'seq 4');
    await waitBackendMessages(conn, 4);
    assert.deepEqual(texts(conn), ['one', 'two', 'three', 'four']);
  });

  test('1,000 POSTs sent concurrently, shuffled, 100 of them twice, arrive in order and once each', { timeout: 90_000 }, async (t) => {
    const N = 1000;
    const DUPS = 100;
    assertFdLimit(tether.pid, 2 * (N + DUPS) + 200);
    const seed = testSeed();
    t.diagnostic(`seed ${seed} (TETHER_TEST_SEED=${seed} replays the order)`);
    const rand = prng(seed);
    const { url, sid, conn } = await session(`/app/${tag('bulk')}`);
    const seqs = Array.from({ length: N }, (_, i) => i + 1);
    const launches = shuffled(seqs, rand);
    for (const d of shuffled(seqs, rand).slice(0, DUPS)) launches.splice(randInt(rand, 0, launches.length), 0, d);
    assert.equal(launches.length, N + DUPS);

    const results = await withTimeout(
      Promise.all(launches.map((seq) => send(url, sid, seq, `m${seq}`, { timeoutMs: 60_000 }).then((r) => ({ seq, r })))),
      60_000,
      'answers to all POSTs',
    );
    const bad = results.filter(({ r }) => r.status !== 204);
    assert.deepEqual(
      bad.slice(0, 5).map(({ seq, r }) => `seq ${seq}: ${r.status} ${r.body}`),
      [],
      `${bad.length} POSTs were not answered 204`,
    );
    // One more, in order, after everything: once the backend has it, nothing else is in flight.
    assertNoContent(await send(url, sid, N + 1, 'end'), 'the last POST');
    await waitBackendMessages(conn, N + 1, 30_000);
    const got = texts(conn);
    const expected = [...seqs.map((s) => `m${s}`), 'end'];
    const firstBad = got.findIndex((m, i) => m !== expected[i]);
    assert.equal(firstBad, -1, `message ${firstBad + 1} at the backend is ${got[firstBad]}`);
    assert.equal(got.length, N + 1, `the backend received ${got.length} messages`);
  });

  test('POST works for an SSE session too', { timeout: TEST_TIMEOUT }, async () => {
    const path = `/app/${tag('sse')}`;
    const s = await openSse(tether.port, path);
    assertSseHead(s);
    const { sid } = await readOpen(s);
    const conn = await backend.waitConnection((c) => c.path === path);
    assertNoContent(await send(`${http}${path}`, sid, 1, 'from an SSE client'), 'POST');
    assertNoContent(await send(`${http}${path}`, sid, 2, Buffer.from([1, 2, 3]), { binary: true }), 'POST');
    await waitBackendMessages(conn, 2);
    assert.deepEqual(texts(conn), ['from an SSE client', '<binary 010203>']);
    s.destroy();
  });

  test('bad POSTs: 400 for bad parameters or UTF-8, 404 unknown, 409 too far ahead, 413 too large', { timeout: TEST_TIMEOUT }, async () => {
    const { url, path, sid, conn } = await session(`/app/${tag('errors')}`);
    const post = (params, body = 'x', headers = { 'Content-Type': 'text/plain' }) =>
      rawRequest(
        tether.port,
        Buffer.concat([
          Buffer.from(
            `POST ${withQuery(path, params)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
              Object.entries(headers)
                .map(([k, v]) => `${k}: ${v}\r\n`)
                .join('') +
              `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
            'latin1',
          ),
          Buffer.isBuffer(body) ? body : Buffer.from(body),
        ]),
      );

    assertOneLineReason(await post({ 'tether-session': sid }), 400, 'no tether-seq');
    for (const bad of ['', 'abc', '-1', '1.5', '0x1', '1e3']) {
      assertOneLineReason(await post({ 'tether-session': sid, 'tether-seq': bad }), 400, `tether-seq=${JSON.stringify(bad)}`);
    }
    assertOneLineReason(await post({ 'tether-seq': 1 }), 400, 'no tether-session');
    for (const bytes of [[0xc3, 0x28], [0xff, 0xfe], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
      const body = Buffer.concat([Buffer.from('ok '), Buffer.from(bytes)]);
      assertOneLineReason(await post({ 'tether-session': sid, 'tether-seq': 1 }, body), 400, `bad UTF-8 ${Buffer.from(bytes).toString('hex')}`);
    }
    assertOneLineReason(
      await post({ 'tether-session': sid, 'tether-seq': 1 }, Buffer.from([0xc3, 0x28]), {}),
      400,
      'bad UTF-8 without a Content-Type (text)',
    );
    assertOneLineReason(await post({ 'tether-session': unknownSid(), 'tether-seq': 1 }), 404, 'unknown session');
    assertOneLineReason(await post({ 'tether-session': sid, 'tether-seq': 5000 }), 409, 'seq 5000 with tether_buffer 1000');
    assertOneLineReason(await post({ 'tether-session': sid, 'tether-seq': 1 }, 'z'.repeat(100 * 1024)), 413, 'a body over client_max_body_size 64k');
    // None of those reached the backend nor used up seq 1; the same bytes as binary are fine.
    assertNoContent(await send(url, sid, 1, 'first valid'), 'seq 1 after the rejected ones');
    assertNoContent(await send(url, sid, 2, Buffer.from([0xc3, 0x28]), { binary: true }), 'invalid UTF-8 as binary');
    await waitBackendMessages(conn, 2);
    assert.deepEqual(texts(conn), ['first valid', '<binary c328>']);

    // tether_max_message 1k and tether_buffer 100 at /small/.
    const small = await session(`/small/${tag('small')}`);
    const big = await send(small.url, small.sid, 1, 'y'.repeat(2048));
    assertOneLineReason(big, 413, 'a message over tether_max_message 1k');
    assertOneLineReason(await send(small.url, small.sid, 500, 'far'), 409, 'seq 500 with tether_buffer 100');
    assertNoContent(await send(small.url, small.sid, 1, 'y'.repeat(1024)), 'a message of exactly 1k');
    await waitBackendMessages(small.conn, 1);
    assert.equal(small.conn.messages[0].data.length, 1024);
  });

  test('DELETE closes the upstream with 1000 and ends the session (POST 410, SSE resume 204, poll 410)', { timeout: TEST_TIMEOUT }, async () => {
    // An SSE session with no stream attached.
    const path = `/app/${tag('del-sse')}`;
    const s = await openSse(tether.port, path);
    assertSseHead(s);
    const { sid } = await readOpen(s);
    const conn = await backend.waitConnection((c) => c.path === path);
    s.destroy();
    assertNoContent(await del(`${http}${path}`, sid), 'DELETE');
    const closed = await backendClosed(conn);
    assert.equal(closed.code, 1000, `the backend saw ${JSON.stringify(closed)}`);
    assertOneLineReason(await send(`${http}${path}`, sid, 1, 'late'), 410, 'POST after DELETE');
    const resume = await openSse(tether.port, path, { lastEventId: `${sid}.0` });
    assert.equal(resume.status, 204, `SSE resume after DELETE: ${resume.rawHead}`);

    // A poll session.
    const p = await session(`/app/${tag('del-poll')}`);
    assertNoContent(await send(p.url, p.sid, 1, 'before delete'), 'POST');
    await waitBackendMessages(p.conn, 1);
    assertNoContent(await del(p.url, p.sid), 'DELETE');
    assert.equal((await backendClosed(p.conn)).code, 1000);
    assertOneLineReason(await send(p.url, p.sid, 2, 'late'), 410, 'POST after DELETE');
    const pollRes = await rawRequest(
      tether.port,
      `GET ${withQuery(p.path, { 'tether-session': p.sid, 'tether-ack': 0 })} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    assertOneLineReason(pollRes, 410, 'poll after DELETE');
    assert.deepEqual(texts(p.conn), ['before delete']);

    assertOneLineReason(await del(`${http}/app/x`, unknownSid()), 404, 'DELETE of an unknown session');
  });
});
