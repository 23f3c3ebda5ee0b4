// HTTP/1.x edge cases over raw TCP sockets, and `tether -t`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RawHttp, assertOneLineReason, checkConfig, deadPort, startTether } from './lib/harness.mjs';

const TEST_TIMEOUT = 20_000;

function confWith(listen, passPort) {
  return `
error_log stderr info;
server {
${listen}
    client_header_timeout 2s;
    client_max_body_size 1k;
    location = /hello { return 200 "hello"; }
    location = /two { return 200 "two"; }
    location = /three { return 200 "three"; }
    location /ws/ { tether_pass ws://127.0.0.1:${passPort}; }
    location /wsonly/ { tether_pass ws://127.0.0.1:${passPort}; tether_transports websocket; }
}
`;
}

describe('HTTP edge cases (raw sockets)', () => {
  let tether;
  let port;
  const conns = [];

  before(async () => {
    tether = await startTether(confWith('    listen 127.0.0.1:0;', await deadPort()));
    port = tether.port;
  });

  after(async () => {
    for (const c of conns) c.destroy();
    await tether?.stop();
  });

  async function connect() {
    const c = await RawHttp.connect(port);
    conns.push(c);
    return c;
  }

  const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;

  test('GET /hello → 200 "hello" (return directive)', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(get('/hello'));
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
    assert.match(res.headers['content-type'] ?? '', /^text\/plain\b/);
  });

  test('unknown path → 404 with a one-line reason', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    assertOneLineReason(await c.request(get('/no/such/thing')), 404);
  });

  test('a header block over 16 KiB → 431', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(get('/hello', `X-Big: ${'a'.repeat(17 * 1024)}\r\n`));
    assertOneLineReason(res, 431);
  });

  test('many headers together over 16 KiB → 431', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    let extra = '';
    for (let i = 0; i < 200; i++) extra += `X-H${i}: ${'b'.repeat(100)}\r\n`; // ≈ 21 KiB
    assertOneLineReason(await c.request(get('/hello', extra)), 431);
  });

  test('a body of exactly client_max_body_size (1k) is accepted', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const body = 'z'.repeat(1024);
    const res = await c.request(`POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n${body}`);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
  });

  test('a Content-Length body over client_max_body_size → 413', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const body = 'z'.repeat(2048);
    const res = await c.request(`POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n${body}`);
    assertOneLineReason(res, 413);
  });

  test('a chunked body over client_max_body_size → 413', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const chunk = 'y'.repeat(600);
    const res = await c.request(
      `POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`,
    );
    assertOneLineReason(res, 413);
  });

  test('a chunked body within the limit → 200', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(
      `POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
    // The connection stays usable: the chunked body was consumed exactly.
    const again = await c.request(get('/two'));
    assert.equal(again.status, 200);
    assert.equal(again.body, 'two');
  });

  test('Content-Length together with Transfer-Encoding → 400 and close', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(
      `POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    );
    assertOneLineReason(res, 400);
    await c.waitClose();
  });

  test('two differing Content-Length headers → 400', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(`POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`);
    assertOneLineReason(res, 400);
  });

  test('a malformed request line → 400, then the connection closes', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    assertOneLineReason(await c.request('THIS IS NOT HTTP\r\n\r\n'), 400);
    await c.waitClose();
  });

  test('three pipelined requests → three responses in order on one connection', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    c.write(get('/hello') + get('/two') + get('/three')); // one write
    const bodies = [];
    for (let i = 0; i < 3; i++) {
      const res = await c.readResponse();
      assert.equal(res.status, 200);
      bodies.push(res.body);
    }
    assert.deepEqual(bodies, ['hello', 'two', 'three']);
    assert.equal(c.isClosed, false, 'the connection closed after pipelined requests');
    const fourth = await c.request(get('/hello'));
    assert.equal(fourth.body, 'hello');
  });

  test('three pipelined GET /hello → three 200 "hello"', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    c.write(get('/hello').repeat(3));
    for (let i = 0; i < 3; i++) {
      const res = await c.readResponse();
      assert.equal(res.status, 200, `response ${i + 1}`);
      assert.equal(res.body, 'hello', `response ${i + 1}`);
    }
  });

  test('HTTP/1.1 keeps the connection alive between requests', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const first = await c.request(get('/hello'));
    assert.equal(first.status, 200);
    assert.notEqual(String(first.headers.connection ?? '').toLowerCase(), 'close');
    const second = await c.request(get('/two'));
    assert.equal(second.status, 200);
    assert.equal(second.body, 'two');
    // An error response that is not a framing error keeps the connection too.
    assertOneLineReason(await c.request(get('/missing')), 404);
    const third = await c.request(get('/three'));
    assert.equal(third.body, 'three');
  });

  test('HTTP/1.0 without keep-alive → response, then close', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request('GET /hello HTTP/1.0\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
    await c.waitClose();
  });

  test('Connection: close on HTTP/1.1 → response, then close', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(get('/hello', 'Connection: close\r\n'));
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
    await c.waitClose();
  });

  test('a plain GET to a WebSocket-only tether_pass location → 426', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(get('/wsonly/chat'));
    assertOneLineReason(res, 426);
    assert.equal(res.headers.upgrade, 'websocket');
  });

  test('a plain GET to a location with every transport → 400 naming the ways in', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    const res = await c.request(get('/ws/chat'));
    assertOneLineReason(res, 400);
    assert.match(res.body, /WebSocket upgrade.*text\/event-stream.*tether-transport=poll/);
  });

  test('a request head that stalls → 408 (client_header_timeout 2s), then close', { timeout: TEST_TIMEOUT }, async () => {
    const c = await connect();
    c.write('GET /hello HTTP/1.1\r\nHost: x\r\n'); // no blank line: the head never ends
    // Awaits tether's answer; the 15 s is only a guard against a tether that never answers.
    const res = await c.readResponse({ timeoutMs: 15_000 });
    assertOneLineReason(res, 408);
    await c.waitClose();
  });
});

describe('several listeners', () => {
  test('each listen directive is logged and serves', { timeout: TEST_TIMEOUT }, async () => {
    const tether = await startTether(confWith('    listen 127.0.0.1:0;\n    listen 127.0.0.1:0;', await deadPort()));
    try {
      assert.equal(tether.ports.length, 2);
      assert.notEqual(tether.ports[0], tether.ports[1]);
      for (const p of tether.ports) {
        const c = await RawHttp.connect(p);
        try {
          const res = await c.request('GET /hello HTTP/1.1\r\nHost: x\r\n\r\n');
          assert.equal(res.body, 'hello');
        } finally {
          c.destroy();
        }
      }
    } finally {
      await tether.stop();
    }
  });
});

describe('tether -t (config check)', () => {
  test('a good config → exit 0, "test is successful"', { timeout: TEST_TIMEOUT }, async () => {
    const r = await checkConfig(confWith('    listen 127.0.0.1:0;', 9));
    assert.equal(r.code, 0, `exit code ${r.code}\n${r.stderr}`);
    assert.ok(
      r.stderr.includes(`configuration file ${r.file} test is successful`),
      `stderr lacks "configuration file ${r.file} test is successful":\n${r.stderr}`,
    );
  });

  test('an unknown directive → exit 1, naming it and file:line', { timeout: TEST_TIMEOUT }, async () => {
    const r = await checkConfig('error_log stderr info;\nbogus on;\nserver { listen 127.0.0.1:0; }\n');
    assert.equal(r.code, 1, `exit code ${r.code}\n${r.stderr}`);
    assert.ok(
      r.stderr.includes(`unknown directive "bogus" in ${r.file}:2`),
      `stderr lacks 'unknown directive "bogus" in ${r.file}:2':\n${r.stderr}`,
    );
  });

  test('an error deeper in a block names its own line', { timeout: TEST_TIMEOUT }, async () => {
    const r = await checkConfig(
      'error_log stderr info;\nserver {\n    listen 127.0.0.1:0;\n    location / {\n        frobnicate 1;\n    }\n}\n',
    );
    assert.equal(r.code, 1, `exit code ${r.code}\n${r.stderr}`);
    assert.ok(
      r.stderr.includes(`unknown directive "frobnicate" in ${r.file}:5`),
      `stderr lacks 'unknown directive "frobnicate" in ${r.file}:5':\n${r.stderr}`,
    );
  });
});
