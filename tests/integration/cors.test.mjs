// Origins and CORS (tether_allow_origin) on every transport: WebSocket upgrades (Node `ws`
// client), SSE (raw socket), poll / POST / DELETE (fetch) and preflight OPTIONS (raw socket).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  assertOneLineReason,
  openWs,
  rawRequest,
  startNodeWsBackend,
  startTether,
  withTimeout,
  wsUnexpectedResponse,
  settleAll,
} from './lib/harness.mjs';
import {
  assertNoContent,
  assertSseHead,
  del,
  http as request,
  openSse,
  poll,
  pollJson,
  pollOpen,
  readOpen,
  send,
  waitBackendMessages,
  withQuery,
} from './lib/transports.mjs';

const TEST_TIMEOUT = 30_000;
const A = 'https://a.example';
const B = 'https://b.example';
const EVIL = 'https://evil.example';
const tag = (name) => `${name}-${randomBytes(4).toString('hex')}`;

/** Asserts the CORS headers for an allowed `origin`. */
function assertCors(res, origin, what) {
  const ctx = `${what}: ${res.rawHead}`;
  assert.equal(res.headers['access-control-allow-origin'], origin, ctx);
  assert.equal(res.headers['access-control-allow-credentials'], 'true', ctx);
  const vary = [].concat(res.headers.vary ?? []).join(',');
  assert.ok(vary.split(',').some((v) => v.trim().toLowerCase() === 'origin'), `Vary lacks Origin\n${ctx}`);
}

function assertNoCors(res, what) {
  assert.equal(res.headers['access-control-allow-origin'], undefined, `${what}: ${res.rawHead}`);
  assert.equal(res.headers['access-control-allow-credentials'], undefined, `${what}: ${res.rawHead}`);
}

describe('origins and CORS', () => {
  let backend;
  let tether;
  let http;

  before(async () => {
    backend = await startNodeWsBackend(); // echoes
    const pass = `tether_pass ws://127.0.0.1:${backend.port}; tether_session_linger 10s;`;
    tether = await startTether(`
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /app/ { ${pass} tether_allow_origin ${A} ${B}; }
    location /any/ { ${pass} tether_allow_origin *; }
    location /open/ { ${pass} }
}
`);
    http = `http://127.0.0.1:${tether.port}`;
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close()]);
  });

  test('listed origins: WebSocket opens; SSE, poll, POST and DELETE answer with the CORS headers', { timeout: TEST_TIMEOUT }, async () => {
    const ws = await openWs(`ws://127.0.0.1:${tether.port}/app/${tag('ws')}`, [], { origin: A });
    ws.ws.send('cors ws');
    assert.equal((await ws.next()).data.toString(), 'cors ws');
    ws.ws.close(1000);
    await withTimeout(ws.closed, 10_000, 'the WebSocket to close');

    const ssePath = `/app/${tag('sse')}`;
    const s = await openSse(tether.port, ssePath, { headers: { Origin: B } });
    assertSseHead(s, 'SSE from a listed origin');
    assertCors(s, B, 'SSE');
    await readOpen(s);
    s.destroy();
    const sseConn = await backend.waitConnection((c) => c.path === ssePath);
    assert.equal(sseConn.headers.origin, B, 'the Origin is forwarded to the backend');

    const path = `/app/${tag('poll')}`;
    const url = `${http}${path}`;
    const { sid, res: openRes } = await pollOpen(url, { headers: { Origin: A } });
    assertCors(openRes, A, 'poll open');
    const sent = await send(url, sid, 1, 'cors post', { headers: { Origin: A } });
    assertNoContent(sent, 'POST');
    assertCors(sent, A, 'POST');
    const polled = await poll(url, sid, 0, { headers: { Origin: B } });
    assertCors(polled, B, 'poll');
    assert.deepEqual(pollJson(polled).messages, [{ seq: 1, text: 'cors post' }]);
    const deleted = await del(url, sid, { headers: { Origin: A } });
    assertNoContent(deleted, 'DELETE');
    assertCors(deleted, A, 'DELETE');
  });

  test('an unlisted origin gets 403 with a one-line reason on every transport, and nothing reaches the backend', { timeout: TEST_TIMEOUT }, async () => {
    for (const origin of [EVIL, 'https://a.example.evil', 'http://a.example', 'null']) {
      const wsPath = `/app/${tag('ws-evil')}`;
      const up = await wsUnexpectedResponse(`ws://127.0.0.1:${tether.port}${wsPath}`, [], { origin });
      assert.equal(up.status, 403, `WebSocket upgrade from ${origin}: ${up.status} ${up.body}`);
      assert.match(up.headers['content-type'] ?? '', /^text\/plain\b/);
      assert.match(up.body, /^[^\r\n]*\S[^\r\n]*\r?\n?$/, `body ${JSON.stringify(up.body)}`);

      const ssePath = `/app/${tag('sse-evil')}`;
      const s = await openSse(tether.port, ssePath, { headers: { Origin: origin } });
      assertOneLineReason(s.response, 403, `SSE from ${origin}`);

      const pollPath = `/app/${tag('poll-evil')}`;
      const opened = await request(withQuery(`${http}${pollPath}`, { 'tether-transport': 'poll' }), { headers: { Origin: origin } });
      assertOneLineReason(opened, 403, `poll open from ${origin}`);
      for (const p of [wsPath, ssePath, pollPath]) {
        assert.equal(backend.connections.filter((c) => c.path === p).length, 0, `${p} from ${origin} reached the backend`);
      }
    }

    // A session opened without Origin: poll, POST and DELETE from an unlisted origin are refused.
    const path = `/app/${tag('session')}`;
    const url = `${http}${path}`;
    const { sid } = await pollOpen(url);
    const conn = await backend.waitConnection((c) => c.path === path);
    assertOneLineReason(await poll(url, sid, 0, { headers: { Origin: EVIL } }), 403, 'poll');
    assertOneLineReason(await send(url, sid, 1, 'evil', { headers: { Origin: EVIL } }), 403, 'POST');
    assertOneLineReason(await del(url, sid, { headers: { Origin: EVIL } }), 403, 'DELETE');
    const resume = await openSse(tether.port, path, { lastEventId: `${sid}.0`, headers: { Origin: EVIL } });
    assertOneLineReason(resume.response, 403, 'SSE resume');
    // The session is intact: seq 1 is still free and the upstream open.
    assertNoContent(await send(url, sid, 1, 'good'), 'POST without Origin');
    await waitBackendMessages(conn, 1);
    assert.deepEqual(
      conn.messages.map((m) => m.data.toString()),
      ['good'],
    );
    assert.deepEqual(pollJson(await poll(url, sid, 0)).messages, [{ seq: 1, text: 'good' }], 'the echo');
    assertNoContent(await del(url, sid), 'DELETE without Origin');
  });

  test('requests without Origin are allowed and get no CORS headers', { timeout: TEST_TIMEOUT }, async () => {
    const ws = await openWs(`ws://127.0.0.1:${tether.port}/app/${tag('ws-none')}`);
    ws.ws.close(1000);
    await withTimeout(ws.closed, 10_000, 'the WebSocket to close');
    const s = await openSse(tether.port, `/app/${tag('sse-none')}`);
    assertSseHead(s);
    assertNoCors(s, 'SSE without Origin');
    s.destroy();
    const url = `${http}/app/${tag('poll-none')}`;
    const { sid, res } = await pollOpen(url);
    assertNoCors(res, 'poll open without Origin');
    assertNoContent(await del(url, sid));
  });

  test('preflight OPTIONS: a listed origin gets 204 with the CORS headers; an unlisted one 403', { timeout: TEST_TIMEOUT }, async () => {
    const target = withQuery(`/app/${tag('preflight')}`, { 'tether-session': 'abc', 'tether-seq': 1 });
    const preflight = (origin, method, headers) =>
      rawRequest(
        tether.port,
        `OPTIONS ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: ${origin}\r\n` +
          `Access-Control-Request-Method: ${method}\r\n` +
          (headers ? `Access-Control-Request-Headers: ${headers}\r\n` : '') +
          'Connection: close\r\n\r\n',
        { method: 'OPTIONS' },
      );
    for (const [origin, method, headers] of [
      [A, 'POST', 'content-type, x-custom'],
      [B, 'DELETE', 'x-other'],
      [A, 'GET', 'last-event-id'],
    ]) {
      const res = await preflight(origin, method, headers);
      const ctx = `preflight ${origin} ${method}: ${res.rawHead}`;
      assert.equal(res.status, 204, ctx);
      assertCors(res, origin, 'preflight');
      const methods = String(res.headers['access-control-allow-methods'] ?? '')
        .split(',')
        .map((m) => m.trim().toUpperCase());
      for (const m of ['GET', 'POST', 'DELETE']) assert.ok(methods.includes(m), `Allow-Methods lacks ${m}\n${ctx}`);
      const allowed = String(res.headers['access-control-allow-headers'] ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean);
      for (const h of headers.split(',').map((x) => x.trim())) {
        assert.ok(allowed.includes(h), `Allow-Headers ${JSON.stringify(res.headers['access-control-allow-headers'])} lacks ${h}\n${ctx}`);
      }
      assert.match(String(res.headers['access-control-max-age'] ?? ''), /^\d+$/, `Access-Control-Max-Age\n${ctx}`);
    }
    assertOneLineReason(await preflight(EVIL, 'POST', 'content-type'), 403, 'preflight from an unlisted origin');
    assert.equal(
      backend.connections.filter((c) => c.path.startsWith('/app/preflight')).length,
      0,
      'a preflight opened an upstream',
    );
  });

  test('tether_allow_origin * allows any origin; without the directive, no checks and no CORS headers', { timeout: TEST_TIMEOUT }, async () => {
    const ws = await openWs(`ws://127.0.0.1:${tether.port}/any/${tag('ws')}`, [], { origin: EVIL });
    ws.ws.close(1000);
    await withTimeout(ws.closed, 10_000, 'the WebSocket to close');
    const anyUrl = `${http}/any/${tag('poll')}`;
    const any = await pollOpen(anyUrl, { headers: { Origin: EVIL } });
    const acao = any.res.headers['access-control-allow-origin'];
    assert.ok(acao === EVIL || acao === '*', `Access-Control-Allow-Origin ${acao} for * and ${EVIL}`);
    assertNoContent(await del(anyUrl, any.sid, { headers: { Origin: EVIL } }));

    const ows = await openWs(`ws://127.0.0.1:${tether.port}/open/${tag('ws')}`, [], { origin: EVIL });
    ows.ws.close(1000);
    await withTimeout(ows.closed, 10_000, 'the WebSocket to close');
    const s = await openSse(tether.port, `/open/${tag('sse')}`, { headers: { Origin: EVIL } });
    assertSseHead(s, 'SSE without tether_allow_origin');
    assertNoCors(s, 'SSE without tether_allow_origin');
    s.destroy();
    const openUrl = `${http}/open/${tag('poll')}`;
    const opened = await pollOpen(openUrl, { headers: { Origin: EVIL } });
    assertNoCors(opened.res, 'poll open without tether_allow_origin');
    const sent = await send(openUrl, opened.sid, 1, 'x', { headers: { Origin: EVIL } });
    assertNoContent(sent);
    assertNoCors(sent, 'POST without tether_allow_origin');
    assertNoContent(await del(openUrl, opened.sid, { headers: { Origin: EVIL } }));
  });
});
