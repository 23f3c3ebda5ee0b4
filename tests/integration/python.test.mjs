// Interop with a second, independent WebSocket implementation: Debian's python3-websockets,
// as the backend (ws client → tether → py_backend.py) and as the client
// (py_client.py → tether → ws backend).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { openWs, runPyClient, startNodeWsBackend, startPyBackend, startTether, withTimeout, settleAll } from './lib/harness.mjs';

const TEST_TIMEOUT = 30_000;

describe('python3-websockets peers through tether', () => {
  let py;
  let nodeBackend;
  let tether;
  let base;

  before(async () => {
    py = await startPyBackend();
    nodeBackend = await startNodeWsBackend();
    tether = await startTether(`
error_log stderr info;
server {
    listen 127.0.0.1:0;
    location /py/ { tether_pass ws://127.0.0.1:${py.port}; }
    location /node/ { tether_pass ws://127.0.0.1:${nodeBackend.port}; }
}
`);
    base = `ws://127.0.0.1:${tether.port}`;
  });

  after(async () => {
    await settleAll([tether?.stop(), py?.stop(), nodeBackend?.close()]);
  });

  test('ws client ↔ py_backend: text and binary echo', { timeout: TEST_TIMEOUT }, async () => {
    const client = await openWs(`${base}/py/echo`);
    client.ws.send('grüße aus node');
    const text = await client.next();
    assert.equal(text.isBinary, false);
    assert.equal(text.data.toString('utf8'), 'grüße aus node');

    const payload = randomBytes(100_000);
    client.ws.send(payload);
    const bin = await client.next();
    assert.equal(bin.isBinary, true);
    assert.ok(payload.equals(bin.data), 'binary echo from python differs');

    client.ws.close(1000, 'done');
    const closed = await withTimeout(client.closed, 10_000, 'the close handshake');
    assert.equal(closed.code, 1000);
  });

  test('py_backend closing with 4005 "done" reaches the ws client', { timeout: TEST_TIMEOUT }, async () => {
    const client = await openWs(`${base}/py/closer`);
    client.ws.send('close:4005:done');
    const closed = await withTimeout(client.closed, 10_000, 'the close from the python backend');
    assert.deepEqual(closed, { code: 4005, reason: 'done' });
  });

  test('py_backend selects subprotocol "chat"', { timeout: TEST_TIMEOUT }, async () => {
    const client = await openWs(`${base}/py/proto`, ['superchat', 'chat']);
    assert.equal(client.ws.protocol, 'chat');
    client.ws.send('on chat');
    assert.equal((await client.next()).data.toString(), 'on chat');
    client.ws.close(1000);
    await withTimeout(client.closed, 10_000, 'the close handshake');
  });

  test('py_client ↔ ws backend: text, binary and close 1000', { timeout: TEST_TIMEOUT }, async () => {
    const path = `/node/from-python?tag=${randomBytes(4).toString('hex')}`;
    const result = await runPyClient(`${base}${path}`);
    assert.equal(result.code, 0, `py_client.py failed (code ${result.code})\n${result.stdout}${result.stderr}`);
    const conn = await nodeBackend.waitConnection((c) => c.path === path);
    assert.deepEqual(
      conn.messages.map((m) => m.isBinary),
      [false, true],
      'the backend should have seen one text then one binary message',
    );
    assert.equal(conn.messages[0].data.toString('utf8'), 'hello from python ✓');
    assert.equal(conn.messages[1].data.length, 1024);
    const closed = await withTimeout(conn.closed, 10_000, 'the backend to see the close');
    assert.deepEqual(closed, { code: 1000, reason: 'done' });
  });
});
