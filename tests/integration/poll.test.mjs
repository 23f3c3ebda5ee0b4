// Long-polling transport of the edge protocol: Node's built-in fetch as the client; Node `ws`
// and python3-websockets as backends.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { assertOneLineReason, startNodeWsBackend, startPyBackend, startTether, withTimeout, settleAll } from './lib/harness.mjs';
import {
  assertNoContent,
  backendClosed,
  del,
  http as request,
  parseJson,
  poll,
  pollJson,
  pollOpen,
  pollUntil,
  prng,
  pushMessages,
  roundTrip,
  send,
  startPoll,
  testSeed,
  unknownSid,
  withQuery,
} from './lib/transports.mjs';

const TEST_TIMEOUT = 30_000;
const tag = (name) => `${name}-${randomBytes(4).toString('hex')}`;

describe('long-polling transport', () => {
  let backend; // Node ws, no echo
  let py; // python3-websockets echo backend
  let tether;
  let http;

  before(async () => {
    backend = await startNodeWsBackend({ echo: false });
    py = await startPyBackend();
    const pass = `tether_pass ws://127.0.0.1:${backend.port};`;
    tether = await startTether(`
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /app/ { ${pass} tether_session_linger 10s; tether_poll_timeout 30s; }
    location /bulk/ { ${pass} tether_session_linger 10s; tether_poll_timeout 30s; tether_buffer 200 64k; }
    location /pt/ { ${pass} tether_session_linger 10s; tether_poll_timeout 200ms; }
    location /short/ { ${pass} tether_session_linger 1s; tether_poll_timeout 30s; }
    location /py/ { tether_pass ws://127.0.0.1:${py.port}; tether_session_linger 10s; tether_poll_timeout 30s; }
}
`);
    http = `http://127.0.0.1:${tether.port}`;
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close(), py?.stop()]);
  });

  /** A new poll session at `path` (under `http`) and its backend connection. */
  async function session(path) {
    const url = `${http}${path}`;
    const { sid, protocol } = await pollOpen(url);
    const conn = path.startsWith('/py/') ? null : await backend.waitConnection((c) => c.path === path);
    return { url, sid, protocol, conn };
  }

  test('opening answers {"session","protocol"} at once; the backend sees tether-* stripped', { timeout: TEST_TIMEOUT }, async () => {
    const name = tag('open');
    const url = `${http}/app/${name}?a=1&tether-transport=poll&b=x%2Fy`;
    const res = await fetch(url, { headers: { Cookie: 'k=v', Authorization: 'Basic Zm9vOmJhcg==' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/);
    const json = parseJson(await res.text());
    assert.deepEqual(Object.keys(json).sort(), ['protocol', 'session']);
    assert.equal(json.protocol, '');
    const conn = await backend.waitConnection((c) => c.path.startsWith(`/app/${name}`));
    assert.equal(conn.path, `/app/${name}?a=1&b=x%2Fy`);
    assert.equal(conn.headers.cookie, 'k=v');
    assert.equal(conn.headers.authorization, 'Basic Zm9vOmJhcg==');
    assert.equal(conn.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(conn.headers['x-forwarded-host'], `127.0.0.1:${tether.port}`);
    assertNoContent(await del(`${http}/app/${name}`, json.session), 'DELETE');
  });

  test('text and binary messages: {"seq","text"} and {"seq","binary": base64}; a held poll wakes on a message', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/app/${tag('types')}`);
    conn.ws.send('hi');
    conn.ws.send(Buffer.from([0, 1, 2]));
    conn.ws.send('multi\r\nline ✓');
    const { messages, ack } = await pollUntil(url, sid, 0, { count: 3 });
    assert.deepEqual(messages, [
      { seq: 1, text: 'hi' },
      { seq: 2, binary: 'AAEC' },
      { seq: 3, text: 'multi\r\nline ✓' },
    ]);
    // A poll with nothing after ack is held (tether_poll_timeout 30s) until a message comes.
    const held = await startPoll(tether.port, new URL(url).pathname, sid, ack);
    await roundTrip(tether.port);
    assert.equal(held.answered(), false, 'a poll with nothing after its ack was answered');
    const big = randomBytes(70_000);
    conn.ws.send(big);
    const json = pollJson(await held.response);
    assert.equal(json.messages.length, 1);
    assert.equal(json.messages[0].seq, 4);
    assert.ok(Buffer.from(json.messages[0].binary, 'base64').equals(big), 'binary altered');
    assert.equal(json.close, undefined);
  });

  test('messages stay until acknowledged: re-polling with the same ack returns the same messages', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/app/${tag('ack')}`);
    for (const m of ['a', 'b', 'c']) conn.ws.send(m);
    const expected = [
      { seq: 1, text: 'a' },
      { seq: 2, text: 'b' },
      { seq: 3, text: 'c' },
    ];
    // Poll with ack 0 (releasing nothing) until all three are buffered.
    let json;
    do json = pollJson(await poll(url, sid, 0));
    while (json.messages.length < 3);
    assert.deepEqual(json.messages, expected);
    assert.deepEqual(pollJson(await poll(url, sid, 0)).messages, expected, 'same ack, same messages');
    assert.deepEqual(pollJson(await poll(url, sid, 2)).messages, expected.slice(2), 'after ack 2');
    conn.ws.send('d');
    assert.deepEqual(pollJson(await poll(url, sid, 3)).messages, [{ seq: 4, text: 'd' }]);
  });

  test('10,000 messages arrive exactly once and in order while some poll answers are dropped', { timeout: 90_000 }, async (t) => {
    const N = 10_000;
    const seed = testSeed();
    t.diagnostic(`seed ${seed} (TETHER_TEST_SEED=${seed} replays the drops)`);
    const rand = prng(seed);
    const path = `/bulk/${tag('bulk')}`;
    const { url, sid, conn } = await session(path);
    const payload = (i) => `${i}:${'p'.repeat(i % 37)}`;
    // tether_buffer 200 at /bulk/: tether must pause reading the backend until the client
    // acknowledges, then resume; every answer holds at most 200 messages.
    const pushed = pushMessages(conn.ws, N, payload).then(() => conn.ws.close(1000, 'poll done'));

    const received = [];
    let ack = 0;
    let close = null;
    let polls = 0;
    const dropped = { ignored: 0, aborted: 0 };
    const loop = async () => {
      while (!close) {
        polls++;
        const drop = rand() < 0.3 ? (rand() < 0.5 ? 'ignored' : 'aborted') : null;
        const controller = new AbortController();
        const res = await fetch(withQuery(url, { 'tether-session': sid, 'tether-ack': ack }), { signal: controller.signal });
        if (res.status !== 200) assert.fail(`poll ${polls} (ack ${ack}): ${res.status} ${await res.text()}`);
        if (drop === 'aborted') {
          controller.abort(); // the answer is lost in flight
          await res.arrayBuffer().catch(() => {});
          dropped.aborted++;
          continue;
        }
        const json = parseJson(await res.text(), `poll ${polls}`);
        if (drop === 'ignored') {
          dropped.ignored++; // read but never processed: poll again with the same ack
          continue;
        }
        for (const m of json.messages) {
          assert.equal(m.seq, ack + 1, `poll ${polls} after ack ${ack} returned seq ${m.seq}`);
          assert.equal(typeof m.text, 'string', `message ${m.seq} is not text: ${JSON.stringify(m)}`);
          received.push(m.text);
          ack = m.seq;
        }
        if (json.close) close = json.close;
      }
    };
    await withTimeout(loop(), 60_000, () => `all messages by polling (got ${received.length} in ${polls} polls)`);
    await pushed;
    t.diagnostic(`${polls} polls, ${dropped.ignored} answers ignored, ${dropped.aborted} aborted`);

    assert.deepEqual(close, { code: 1000, reason: 'poll done' });
    assert.equal(received.length, N, `received ${received.length} of ${N}`);
    const firstBad = received.findIndex((d, i) => d !== payload(i + 1));
    assert.equal(firstBad, -1, `message ${firstBad + 1} is ${JSON.stringify(received[firstBad])}`);
    assert.ok(dropped.ignored + dropped.aborted > 0, 'no answer was dropped: the test proved nothing');
    assert.equal((await backendClosed(conn)).code, 1000);
  });

  test('the backend close code and reason reach the poll client; the close wakes a held poll at once', { timeout: TEST_TIMEOUT }, async () => {
    const path = `/app/${tag('close-held')}`;
    const { sid, conn } = await session(path);
    const held = await startPoll(tether.port, path, sid, 0); // nothing after 0: held
    await roundTrip(tether.port);
    assert.equal(held.answered(), false, 'a poll with nothing after its ack was answered');
    conn.ws.close(4002, 'node bye');
    assert.deepEqual(pollJson(await held.response), { messages: [], close: { code: 4002, reason: 'node bye' } });
  });

  test('a closed session answers polls with the messages after ack and the close, again and again', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/app/${tag('close-repeat')}`);
    conn.ws.send('last words');
    conn.ws.send(Buffer.from([1, 2, 3]));
    conn.ws.close(4003, 'node bye ✓');
    await backendClosed(conn);
    const expected = {
      messages: [
        { seq: 1, text: 'last words' },
        { seq: 2, binary: 'AQID' },
      ],
      close: { code: 4003, reason: 'node bye ✓' },
    };
    // Poll with ack 0 (releasing nothing) until tether has taken in the close.
    let json;
    do json = pollJson(await poll(url, sid, 0));
    while (!json.close);
    assert.deepEqual(json, expected);
    assert.deepEqual(pollJson(await poll(url, sid, 0)), expected, 'the same poll again');
    assert.deepEqual(pollJson(await poll(url, sid, 1)), { ...expected, messages: expected.messages.slice(1) });
    assert.deepEqual(pollJson(await poll(url, sid, 2)), { ...expected, messages: [] });
    assertOneLineReason(await send(url, sid, 1, 'too late'), 410, 'POST to a session the backend closed');
  });

  test('python3-websockets backend: POSTs echo back over polling and its close code reaches the client', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid } = await session(`/py/${tag('py')}`);
    assertNoContent(await send(url, sid, 1, 'hello python'), 'POST 1');
    assertNoContent(await send(url, sid, 2, Buffer.from([9, 8, 7]), { binary: true }), 'POST 2');
    const got = await pollUntil(url, sid, 0, { count: 2 });
    assert.deepEqual(got.messages, [
      { seq: 1, text: 'hello python' },
      { seq: 2, binary: Buffer.from([9, 8, 7]).toString('base64') },
    ]);
    assertNoContent(await send(url, sid, 3, 'close:4006:py bye'), 'POST 3');
    const end = await pollUntil(url, sid, got.ack, { untilClose: true });
    assert.deepEqual(end.messages, []);
    assert.deepEqual(end.close, { code: 4006, reason: 'py bye' });
  });

  test('a second poll answers the held one at once with {"messages":[]}', { timeout: TEST_TIMEOUT }, async () => {
    const path = `/app/${tag('second')}`;
    const { sid, conn } = await session(path);
    const first = await startPoll(tether.port, path, sid, 0);
    await roundTrip(tether.port); // tether has read the first poll: it holds it
    assert.equal(first.answered(), false, 'the first poll was answered with nothing to answer');
    const second = await startPoll(tether.port, path, sid, 0);
    assert.deepEqual(pollJson(await first.response, 'the older poll'), { messages: [] });
    await roundTrip(tether.port);
    assert.equal(second.answered(), false, 'the newer poll must be held');
    conn.ws.send('for the second');
    assert.deepEqual(pollJson(await second.response, 'the newer poll'), {
      messages: [{ seq: 1, text: 'for the second' }],
    });
  });

  test('tether_poll_timeout (200ms) answers a held poll with {"messages":[]}; the session goes on', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/pt/${tag('timeout')}`);
    assert.deepEqual(pollJson(await poll(url, sid, 0)), { messages: [] });
    assert.deepEqual(pollJson(await poll(url, sid, 0)), { messages: [] });
    conn.ws.send('after timeouts');
    const got = await pollUntil(url, sid, 0, { count: 1 });
    assert.deepEqual(got.messages, [{ seq: 1, text: 'after timeouts' }]);
  });

  test('a client that stops polling: after the linger the upstream is closed with 1001, then 410', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/short/${tag('linger')}`);
    conn.ws.send('one');
    const got = await pollUntil(url, sid, 0, { count: 1 });
    assert.deepEqual(got.messages, [{ seq: 1, text: 'one' }]);
    // No more polls.
    const closed = await backendClosed(conn);
    assert.equal(closed.code, 1001, `the backend saw ${JSON.stringify(closed)}`);
    assertOneLineReason(await poll(url, sid, 1), 410, 'poll after the linger');
  });

  test('a session closed by the backend answers polls with the close until the linger ends it, then 410', { timeout: TEST_TIMEOUT }, async () => {
    const { url, sid, conn } = await session(`/short/${tag('closed-linger')}`);
    conn.ws.send('m1');
    conn.ws.close(1000, 'done');
    const end = await pollUntil(url, sid, 0, { untilClose: true });
    assert.deepEqual(end.messages, [{ seq: 1, text: 'm1' }]);
    assert.deepEqual(end.close, { code: 1000, reason: 'done' });
    // Until the linger ends it, the closed session answers again with the close.
    const again = await poll(url, sid, 1);
    assert.deepEqual(again.json, { messages: [], close: { code: 1000, reason: 'done' } });
    // tether logs the end of each session (by the id's first 6 characters): await that line.
    await tether.waitStderr(
      (l) => l.includes(`session ${sid.slice(0, 6)}`) && l.includes(' ended: '),
      'the log line of the session ending after its linger',
    );
    assertOneLineReason(await poll(url, sid, 1), 410, 'poll after the linger of a closed session');
  });

  test('bad polls: missing/invalid ack 400, ack ahead 400, unknown session 404, ended session 410', { timeout: TEST_TIMEOUT }, async () => {
    const path = `/app/${tag('errors')}`;
    const { url, sid, conn } = await session(path);
    conn.ws.send('x');
    await pollUntil(url, sid, 0, { count: 1 });

    assertOneLineReason(await request(withQuery(url, { 'tether-session': sid })), 400, 'missing tether-ack');
    for (const bad of ['', 'abc', '-1', '1.5', '0x1', ' 1', '1 ']) {
      assertOneLineReason(await poll(url, sid, bad), 400, `tether-ack=${JSON.stringify(bad)}`);
    }
    assertOneLineReason(await poll(url, sid, 2), 400, 'ack 2 when the last seq is 1');
    assertOneLineReason(await poll(url, sid, '99999999999999999999999'), 400, 'ack far ahead');
    assertOneLineReason(await poll(url, unknownSid(), 0), 404, 'unknown session');
    // The session is unharmed by those.
    conn.ws.send('y');
    assert.deepEqual(pollJson(await poll(url, sid, 1)).messages, [{ seq: 2, text: 'y' }]);

    assertNoContent(await del(url, sid), 'DELETE');
    assert.equal((await backendClosed(conn)).code, 1000, 'DELETE closes the upstream with 1000');
    assertOneLineReason(await poll(url, sid, 2), 410, 'poll after DELETE');
    assertOneLineReason(await send(url, sid, 1, 'too late'), 410, 'POST after DELETE');
    assertOneLineReason(await del(url, unknownSid()), 404, 'DELETE of an unknown session');
  });
});
