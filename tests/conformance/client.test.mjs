// WebSocket conformance of Tether's CLIENT side (the upstream connection), organised like the
// server-side run: a raw client (lib/peer.mjs) talks through Tether to a raw test backend
// (lib/backend.mjs) that checks every frame Tether sends upstream against the client's sender
// rules of RFC 6455 (each frame masked with its own key, RSV 0, known opcodes, minimal lengths,
// well-formed fragments and close frames), drives the close handshake from either end, and
// misbehaves on purpose to see Tether fail the upstream connection with the right code and
// tell the client.
//
// What Tether does when the backend breaks the protocol (module/websocket/relay.cpp): it fails
// the upstream connection with the code the RFC asks for (1002, 1007 or 1009, in a masked close)
// and closes the client with 1014 "upstream protocol error". 1014 is the IANA-registered "Bad
// Gateway" code (a gateway got an invalid response from the upstream, like HTTP 502): the
// client did nothing wrong, so none of 1002/1007/1009 would be true of its connection.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mapLimit, startTether, settleAll } from '../integration/lib/harness.mjs';
import { LIMIT, asciiOf, binaryOf } from './cases/util.mjs';
import { startRawBackend } from './lib/backend.mjs';
import {
  OP,
  binary,
  close,
  closePayload,
  cont,
  encodeFrame,
  fragmented,
  hex,
  ping,
  pieces,
  pong,
  text,
} from './lib/frames.mjs';
import { connectClient } from './lib/peer.mjs';

// Frames as the backend (a server) sends them: unmasked.
const S = {
  text: (p, o = {}) => text(p, { mask: false, ...o }),
  binary: (p, o = {}) => binary(p, { mask: false, ...o }),
  cont: (p, o = {}) => cont(p, { mask: false, ...o }),
  ping: (p, o = {}) => ping(p, { mask: false, ...o }),
  pong: (p, o = {}) => pong(p, { mask: false, ...o }),
  close: (code, reason = '', o = {}) => close(code, reason, { mask: false, ...o }),
  frame: (o) => encodeFrame({ mask: false, ...o }),
  fragmented: (opcode, parts, o = {}) => fragmented(opcode, parts, { mask: false, ...o }),
};

/** The code Tether closes the client with when the backend broke the protocol. */
const UPSTREAM_FAILED = 1014;
const TCP_CLOSE_GRACE_MS = 2_000;
const T = { timeout: 20_000 };

describe("conformance of tether's client side (raw client -> tether -> raw test backend)", () => {
  let backend;
  let tether;
  let seq = 0;
  const counts = {};

  before(async () => {
    backend = await startRawBackend();
    tether = await startTether(`
error_log stderr notice;
server {
    listen 127.0.0.1:0;
    location /up/ {
        tether_pass ws://127.0.0.1:${backend.port};
        tether_max_message ${LIMIT};
    }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close()]);
  });

  /** A raw client through Tether and the backend connection Tether opened for it. */
  async function pair(name) {
    const path = `/up/${name}-${++seq}`;
    const client = await connectClient(tether.port, path);
    const up = await backend.waitConnection(path);
    return { client, up };
  }

  function count(section, n = 1) {
    counts[section] = (counts[section] ?? 0) + n;
  }

  function assertClean({ client, up }) {
    assert.deepEqual(up.violations, [], `Tether's frames to the backend broke the client rules: ${up.describe()}`);
    assert.deepEqual(client.violations, [], `Tether's frames to the client broke the server rules: ${client.describe()}`);
  }

  /**
   * The normal end: the client closes with 1000; the backend sees it (masked, same code),
   * answers and closes TCP, as a server does first (section 7.1.1); the client gets the answer
   * and Tether closes its TCP connection.
   */
  async function finish(p, code = 1000, reason = '') {
    await p.client.sendClose(close(code, reason));
    const atUp = await p.up.waitCloseFrame();
    assert.equal(atUp.code, code, `backend saw close ${atUp.code}, expected ${code}`);
    assert.equal(atUp.reason, reason);
    await p.up.sendClose(S.close(code, reason));
    p.up.end();
    const atClient = await p.client.waitCloseFrame();
    assert.equal(atClient.code, code);
    assert.equal(await p.client.waitTcpClose(), 'end', 'the client connection was reset');
    await p.up.waitTcpClose();
    assertClean(p);
  }

  /** Waits until the backend has N data events (messages, pings, pongs). */
  const upEvents = (p, n) => p.up.until(() => p.up.dataEvents.length >= n, `${n} events at the backend`);
  const clientEvents = (p, n) => p.client.until(() => p.client.dataEvents.length >= n, `${n} events at the client`);

  // -------------------------------------------------------------------------------------------
  // A backend that breaks the protocol. Section 7.1.7: the receiving endpoint fails the
  // connection, sending a close with the code of section 7.4.1 (1002 protocol error, 1007
  // invalid payload, 1009 too big), then closes TCP. Each case: the backend sends SEND (one write
  // each, CHOP as in the server-side tables); Tether must send the backend a masked close with
  // CODE (before the backend sends REST, if any: fail-fast), and close the client with 1014.
  // SENTCLOSE: the backend's bad bytes were its close frame, so it does not answer Tether's.
  async function runUpstreamFailure(c) {
    const p = await pair(`fail-${c.id}`);
    try {
      for (const buf of [].concat(c.send)) await p.up.send(buf, { chop: c.chop });
      const atUp = await p.up.waitCloseFrame();
      assert.equal(atUp.code, c.code, `close ${atUp.code} to the backend, expected ${c.code}: ${p.up.describe()}`);
      if (c.rest) await p.up.send(c.rest); // after the close: must change nothing
      // Section 5.5.1: the backend answers the close, then closes TCP first (section 7.1.1).
      if (!c.sentClose) await p.up.sendClose(S.close(atUp.code));
      p.up.end();
      const atClient = await p.client.waitCloseFrame();
      assert.equal(atClient.code, UPSTREAM_FAILED, `close ${atClient.code} to the client: ${p.client.describe()}`);
      assert.deepEqual(p.client.dataEvents.map((e) => e.type), c.clientSees ?? [], `client events: ${p.client.describe()}`);
      await p.client.sendClose(close(atClient.code));
      assert.equal(await p.client.waitTcpClose(), 'end', 'the client connection was reset');
      await p.up.waitTcpClose();
      const crossed = Math.max(atUp.wall, p.up.closeSentAt + p.up.t0);
      assert.ok(p.up.closedWall - crossed <= TCP_CLOSE_GRACE_MS, 'the upstream TCP connection lingered');
      assertClean(p);
    } finally {
      p.client.destroy();
      p.up.destroy();
    }
  }

  const failures = (section, table) => {
    describe(`${section}: a misbehaving backend`, () => {
      for (const c of table) {
        test(`${c.id} ${c.title} -> ${c.code} upstream, ${UPSTREAM_FAILED} to the client`, T, async () => {
          count(section.split(' ')[0]);
          await runUpstreamFailure(c);
        });
      }
    });
  };

  // -------------------------------------------------------------------------------------------
  // 1 framing. Section 5.1/5.3: a client masks every frame, with a fresh key from a strong
  // source of entropy per frame; section 5.2: minimal length form, RSV 0.
  describe('1 framing', () => {
    const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20];
    for (const [kind, make, opcode] of [['text', asciiOf, OP.TEXT], ['binary', binaryOf, OP.BINARY]]) {
      test(`1.1 ${kind} messages of ${SIZES.join(', ')} bytes reach the backend masked, minimal, intact`, T, async () => {
        count('1');
        const p = await pair(`sizes-${kind}`);
        const payloads = SIZES.map((n, i) => make(n, i));
        for (const pl of payloads) await p.client.send(kind === 'text' ? text(pl) : binary(pl));
        await upEvents(p, payloads.length);
        p.up.dataEvents.forEach((e, i) => {
          assert.equal(e.opcode, opcode);
          assert.ok(e.data.equals(payloads[i]), `message ${i} (${SIZES[i]} bytes) altered`);
        });
        // And back: the backend's messages reach the client unmasked, minimal, intact.
        for (const pl of payloads) await p.up.send(kind === 'text' ? S.text(pl) : S.binary(pl));
        await clientEvents(p, payloads.length);
        p.client.dataEvents.forEach((e, i) => assert.ok(e.data.equals(payloads[i]), `message ${i} to the client altered`));
        await finish(p);
      });
    }

    test('1.2 non-minimal lengths from either side are relayed in the minimal form', T, async () => {
      count('1');
      const p = await pair('nonminimal');
      await p.client.send(Buffer.concat([text('Hello', { lenForm: 64 }), binary(binaryOf(200), { lenForm: 64 })]));
      await upEvents(p, 2);
      await p.up.send(Buffer.concat([S.text('Hello', { lenForm: 16 }), S.binary(binaryOf(300), { lenForm: 64 })]));
      await clientEvents(p, 2);
      assert.ok(p.up.dataEvents[1].data.equals(binaryOf(200)));
      assert.ok(p.client.dataEvents[1].data.equals(binaryOf(300)));
      await finish(p); // assertClean: every frame Tether sent used the minimal form
    });

    test('1.3 1000 messages: 1000 masked frames in order, each with its own key', T, async () => {
      count('1');
      const p = await pair('thousand');
      const msgs = Array.from({ length: 1000 }, (_, i) => `message ${i}`);
      await p.client.send(Buffer.concat(msgs.map((m) => text(m))));
      await upEvents(p, 1000);
      assert.deepEqual(p.up.dataEvents.map((e) => e.data.toString()), msgs, 'messages out of order or altered');
      const keys = p.up.frames.map((f) => f.key.toString('hex'));
      // 1000 random 32-bit keys: a repeat is a 1-in-10^4 event, two repeats practically never.
      assert.ok(new Set(keys).size >= keys.length - 1, `masking keys repeat: ${new Set(keys).size} distinct of ${keys.length}`);
      await finish(p);
    });
  });

  // -------------------------------------------------------------------------------------------
  // 2 pings and pongs. Section 5.5.2/5.5.3: a pong carries the ping's payload; Tether relays
  // pings and pongs each way (the far end answers), masked upstream.
  describe('2 pings and pongs', () => {
    test("2.1 the client's ping reaches the backend masked; the backend's pong comes back", T, async () => {
      count('2');
      const p = await pair('ping-up');
      const payload = binaryOf(125, 2);
      await p.client.send(ping(payload));
      await upEvents(p, 1);
      assert.equal(p.up.dataEvents[0].type, 'ping');
      assert.ok(p.up.dataEvents[0].data.equals(payload));
      await p.up.send(S.pong(payload));
      await clientEvents(p, 1);
      assert.equal(p.client.dataEvents[0].type, 'pong');
      assert.ok(p.client.dataEvents[0].data.equals(payload));
      await finish(p);
    });

    test("2.2 the backend's ping reaches the client; the client's pong reaches the backend masked", T, async () => {
      count('2');
      const p = await pair('ping-down');
      await p.up.send(S.ping('from the backend'));
      await clientEvents(p, 1);
      assert.deepEqual([p.client.dataEvents[0].type, p.client.dataEvents[0].data.toString()], ['ping', 'from the backend']);
      await p.client.send(pong('from the backend'));
      await upEvents(p, 1);
      assert.deepEqual([p.up.dataEvents[0].type, p.up.dataEvents[0].data.toString()], ['pong', 'from the backend']);
      await finish(p);
    });

    test('2.3 an empty ping and an unsolicited pong from the backend are relayed as they are', T, async () => {
      count('2');
      const p = await pair('ping-empty');
      await p.up.send(Buffer.concat([S.ping(''), S.pong('unsolicited')]));
      await clientEvents(p, 2);
      assert.deepEqual(p.client.dataEvents.map((e) => [e.type, e.data.toString()]), [['ping', ''], ['pong', 'unsolicited']]);
      await finish(p);
    });
  });

  failures('2 pings and pongs', [
    { id: '2.4', title: 'backend ping with 126 bytes', send: S.frame({ opcode: OP.PING, payload: binaryOf(126) }), code: 1002 },
    { id: '2.5', title: 'backend ping with FIN clear', send: [S.ping('a', { fin: false }), S.cont('b')], code: 1002 },
  ]);

  // -------------------------------------------------------------------------------------------
  // 3 reserved bits (section 5.2) and 4 opcodes (section 5.2), and masking (section 5.1: "A
  // client MUST close a connection if it detects a masked frame").
  failures('1 framing', [
    { id: '1.4', title: 'backend sends a masked text frame', send: text('masked by the server'), code: 1002 },
    { id: '1.5', title: 'backend sends a masked ping after a good message', send: [S.text('fine'), ping('masked')], code: 1002, clientSees: ['message'] },
    { id: '1.6', title: '64-bit length with the high bit set', send: S.frame({ opcode: OP.BINARY, payload: '', rawLen64: hex('80 00 00 00 00 00 00 01') }), code: 1002 },
  ]);
  failures('3 reserved bits', [1, 2, 3, 4, 5, 6, 7].map((rsv) => ({
    id: `3.${rsv}`,
    title: `backend text with RSV=${rsv}`,
    send: S.text('Hello, world!', { rsv }),
    chop: rsv === 7 ? 'octet' : undefined,
    code: 1002,
  })).concat([
    { id: '3.8', title: 'backend ping with RSV=6', send: S.ping('x', { rsv: 6 }), code: 1002 },
    { id: '3.9', title: 'backend close with RSV=1', send: S.close(1000, '', { rsv: 1 }), code: 1002, sentClose: true },
  ]));
  failures('4 opcodes', [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op, i) => ({
    id: `4.${i + 1}`,
    title: `backend frame with reserved opcode ${op}`,
    send: S.frame({ opcode: op, payload: i % 2 ? 'payload' : '' }),
    code: 1002,
  })));

  // -------------------------------------------------------------------------------------------
  // 5 fragmentation (section 5.4): fragments relayed in order; Tether reassembles messages
  // (an intermediary MAY change the fragmentation of a message without extensions), so each
  // side gets the message whole; control frames between fragments are relayed at once.
  describe('5 fragmentation', () => {
    test('5.1 the client fragments a message in 200 frames with pings between: the backend gets the pings first, then the message whole', T, async () => {
      count('5');
      const p = await pair('frag-up');
      const parts = Array.from({ length: 200 }, (_, i) => Buffer.from(`<${i}>`));
      const frames = parts.map((pl, i) => encodeFrame({ opcode: i ? OP.CONT : OP.BINARY, payload: pl, fin: i === 199 }));
      await p.client.send(Buffer.concat([...frames.slice(0, 100), ping('p1'), ...frames.slice(100, 150), ping('p2'), ...frames.slice(150)]));
      await upEvents(p, 3);
      const ev = p.up.dataEvents;
      assert.deepEqual(ev.map((e) => e.type), ['ping', 'ping', 'message']);
      assert.deepEqual(ev.slice(0, 2).map((e) => e.data.toString()), ['p1', 'p2']);
      assert.equal(ev[2].opcode, OP.BINARY);
      assert.ok(ev[2].data.equals(Buffer.concat(parts)), 'fragments reordered or lost');
      await finish(p);
    });

    test('5.2 the backend fragments a text message with a ping between: the client gets the ping at once, then the message', T, async () => {
      count('5');
      const p = await pair('frag-down');
      await p.up.send(Buffer.concat([S.text('fragment1', { fin: false }), S.ping('between')]));
      await clientEvents(p, 1); // the ping is relayed while the message is still open
      await p.up.send(Buffer.concat([S.cont('fragment2', { fin: false }), S.cont('fragment3')]));
      await clientEvents(p, 2);
      assert.deepEqual(p.client.dataEvents.map((e) => [e.type, e.data.toString()]), [['ping', 'between'], ['message', 'fragment1fragment2fragment3']]);
      await finish(p);
    });

    test('5.3 the backend sends empty fragments and 1-byte fragments: messages arrive whole', T, async () => {
      count('5');
      const p = await pair('frag-small');
      await p.up.send(Buffer.concat([S.fragmented(OP.TEXT, ['', '', '']), S.fragmented(OP.BINARY, pieces(binaryOf(50), 1))]));
      await clientEvents(p, 2);
      assert.equal(p.client.dataEvents[0].data.length, 0);
      assert.ok(p.client.dataEvents[1].data.equals(binaryOf(50)));
      await finish(p);
    });
  });
  failures('5 fragmentation', [
    { id: '5.4', title: 'backend continuation with nothing to continue', send: S.cont('orphan'), code: 1002 },
    { id: '5.5', title: 'backend new text frame inside a fragmented message', send: [S.text('a', { fin: false }), S.text('b')], code: 1002 },
    { id: '5.6', title: 'backend close with FIN clear', send: S.close(1000, '', { fin: false }), code: 1002, sentClose: true },
    { id: '5.7', title: 'backend pong in 2 fragments', send: [S.pong('a', { fin: false }), S.cont('b')], code: 1002 },
  ]);

  // -------------------------------------------------------------------------------------------
  // 6 UTF-8 (sections 5.6, 8.1): invalid text from the backend fails the upstream with 1007, as
  // soon as a prefix cannot be valid; valid text split anywhere passes.
  describe('6 UTF-8', () => {
    test('6.1 valid text from the backend split into 2 fragments at every byte position', T, async () => {
      const v = hex('ce ba e1 bd b9 cf 83 ce bc ce b5 f0 9d 84 9e f4 8f bf bf e2 82 ac');
      count('6', v.length - 1);
      const p = await pair('utf8-splits');
      for (let k = 1; k < v.length; k++) await p.up.send(Buffer.concat([S.text(v.subarray(0, k), { fin: false }), S.cont(v.subarray(k))]));
      await clientEvents(p, v.length - 1);
      for (const e of p.client.dataEvents) assert.ok(e.data.equals(v), 'split text altered');
      await finish(p);
    });
  });
  failures('6 UTF-8', [
    { id: '6.2', title: 'backend text with a surrogate (ED A0 80)', send: S.text(hex('48 65 6c 6c 6f ed a0 80')), code: 1007 },
    { id: '6.3', title: 'backend text with an overlong (C0 AF)', send: S.text(hex('c0 af')), code: 1007 },
    { id: '6.4', title: 'backend text above U+10FFFF (F4 90 80 80)', send: S.text(hex('f4 90 80 80')), code: 1007 },
    { id: '6.5', title: 'backend text ending in a truncated code point', send: S.text(hex('61 e2 82')), code: 1007 },
    {
      id: '6.6',
      title: 'backend fragment with a bad prefix: failed before the rest is sent',
      send: S.text(hex('ce ba f4 90'), { fin: false }),
      rest: S.cont(hex('80 80')),
      code: 1007,
    },
    {
      id: '6.7',
      title: 'backend frame cut right after the bad byte: failed before the rest of its payload',
      send: S.text(hex('61 62 63 ff 64 65 66')).subarray(0, 2 + 4),
      rest: S.text(hex('61 62 63 ff 64 65 66')).subarray(6),
      code: 1007,
    },
    { id: '6.8', title: 'backend close reason not UTF-8', send: S.frame({ opcode: OP.CLOSE, payload: closePayload(1000, hex('ed a0 80')) }), code: 1007, sentClose: true },
  ]);

  // -------------------------------------------------------------------------------------------
  // 7 close (sections 5.5.1, 7.1.1-7.1.3, 7.4): the close passes through with its code and reason
  // each way; each side gets the other's reply, never one Tether made up while the other side
  // is there; the server closes TCP first.
  describe('7 close', () => {
    test("7.1 the client closes: the backend gets it masked with the same code and reason; the client gets the backend's reply", T, async () => {
      count('7');
      const p = await pair('close-up');
      await p.client.sendClose(close(4001, 'bye from the client'));
      const atUp = await p.up.waitCloseFrame();
      assert.deepEqual([atUp.code, atUp.reason], [4001, 'bye from the client']);
      assert.equal(p.client.closeReceived, null, 'Tether answered the close before the backend did');
      // A different reply proves the client gets the backend's answer, not an echo by Tether.
      await p.up.sendClose(S.close(4002, 'reply from the backend'));
      const atClient = await p.client.waitCloseFrame();
      assert.deepEqual([atClient.code, atClient.reason], [4002, 'reply from the backend']);
      assert.ok(atClient.wall >= p.up.t0 + p.up.closeSentAt, 'the client got a close before the backend replied');
      assert.equal(await p.client.waitTcpClose(), 'end');
      p.up.end();
      await p.up.waitTcpClose();
      assertClean(p);
    });

    test("7.2 the backend closes: the client gets the same code and reason; the backend gets the client's reply, masked", T, async () => {
      count('7');
      const p = await pair('close-down');
      await p.up.sendClose(S.close(4003, 'bye from the backend'));
      const atClient = await p.client.waitCloseFrame();
      assert.deepEqual([atClient.code, atClient.reason], [4003, 'bye from the backend']);
      assert.equal(p.up.closeReceived, null, 'Tether answered the backend before the client did');
      await p.client.sendClose(close(4004, 'reply from the client'));
      const atUp = await p.up.waitCloseFrame();
      assert.deepEqual([atUp.code, atUp.reason], [4004, 'reply from the client']);
      assert.equal(await p.client.waitTcpClose(), 'end');
      p.up.end(); // the server closes TCP first (section 7.1.1)
      await p.up.waitTcpClose();
      assertClean(p);
    });

    test('7.3 close frames without payload pass as they are, each way', T, async () => {
      count('7', 2);
      for (const from of ['client', 'backend']) {
        const p = await pair(`close-empty-${from}`);
        const empty = (mask) => encodeFrame({ opcode: OP.CLOSE, payload: '', mask });
        const [first, second] = from === 'client' ? [p.client, p.up] : [p.up, p.client];
        await first.sendClose(empty(from === 'client'));
        assert.equal((await second.waitCloseFrame()).code, null, `${from} close without payload changed`);
        await second.sendClose(empty(from !== 'client'));
        assert.equal((await first.waitCloseFrame()).code, null, 'reply without payload changed');
        p.up.end();
        assert.equal(await p.client.waitTcpClose(), 'end');
        await p.up.waitTcpClose();
        assertClean(p);
      }
    });

    test('7.4 a 123-byte reason and every valid code pass through unchanged', T, async () => {
      const codes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999];
      count('7', codes.length);
      await mapLimit(codes, 4, async (code) => {
        const p = await pair(`close-code-${code}`);
        const reason = asciiOf(123, code);
        await p.up.sendClose(S.close(code, reason));
        const atClient = await p.client.waitCloseFrame();
        assert.equal(atClient.code, code);
        assert.equal(atClient.reason, reason.toString());
        await p.client.sendClose(close(code, reason));
        const atUp = await p.up.waitCloseFrame();
        assert.equal(atUp.code, code);
        p.up.end();
        await p.client.waitTcpClose();
        await p.up.waitTcpClose();
        assertClean(p);
      });
    });

    test('7.5 data after a close is not relayed, either way', T, async () => {
      count('7', 2);
      const a = await pair('after-close-down');
      await a.up.send(Buffer.concat([S.close(1000, 'done'), S.text('after the close'), S.ping('after')]));
      await a.client.waitCloseFrame();
      await a.client.sendClose(close(1000));
      await a.up.waitCloseFrame();
      a.up.end();
      await a.client.waitTcpClose();
      await a.up.waitTcpClose();
      assert.deepEqual(a.client.dataEvents, [], 'frames after the backend close reached the client');
      assertClean(a);

      const b = await pair('after-close-up');
      await b.client.send(Buffer.concat([close(1000, 'done'), text('after the close'), ping('after')]));
      await b.up.waitCloseFrame();
      await b.up.sendClose(S.close(1000));
      b.up.end();
      await b.client.waitCloseFrame();
      await b.client.waitTcpClose();
      await b.up.waitTcpClose();
      assert.deepEqual(b.up.dataEvents, [], 'frames after the client close reached the backend');
      assertClean(b);
    });

    test('7.6 the backend drops TCP without a close: the client gets 1014', T, async () => {
      count('7');
      const p = await pair('drop-up');
      p.up.end();
      const atClient = await p.client.waitCloseFrame();
      assert.equal(atClient.code, UPSTREAM_FAILED);
      await p.client.sendClose(close(atClient.code));
      assert.equal(await p.client.waitTcpClose(), 'end');
      assertClean(p);
    });

    test('7.7 the client drops TCP without a close: the backend gets a masked 1001', T, async () => {
      count('7');
      const p = await pair('drop-down');
      p.client.end();
      const atUp = await p.up.waitCloseFrame();
      assert.equal(atUp.code, 1001);
      await p.up.sendClose(S.close(1001));
      p.up.end();
      await p.up.waitTcpClose();
      assertClean(p);
    });

    test('7.9 the backend finishes a message before answering the close: the client gets both, in order', T, async () => {
      count('7');
      const p = await pair('close-late-data');
      await p.client.sendClose(close(1000, 'client done'));
      await p.up.waitCloseFrame();
      // Section 5.5.1: an endpoint may finish sending its current message before its close.
      await p.up.send(Buffer.concat([S.text('last words', { fin: false }), S.cont(' from the backend')]));
      await p.up.sendClose(S.close(1000, 'backend done'));
      p.up.end();
      const atClient = await p.client.waitCloseFrame();
      assert.deepEqual([atClient.code, atClient.reason], [1000, 'backend done']);
      assert.deepEqual(p.client.dataEvents.map((e) => e.data.toString()), ['last words from the backend']);
      await p.client.waitTcpClose();
      await p.up.waitTcpClose();
      assertClean(p);
    });

    test('7.10 both ends close at the same time: each gets the other close, both connections end', T, async () => {
      count('7');
      const p = await pair('close-crossing');
      await Promise.all([p.up.sendClose(S.close(4005, 'backend')), p.client.sendClose(close(4006, 'client'))]);
      const [atClient, atUp] = await Promise.all([p.client.waitCloseFrame(), p.up.waitCloseFrame()]);
      assert.deepEqual([atClient.code, atUp.code], [4005, 4006]);
      p.up.end();
      assert.equal(await p.client.waitTcpClose(), 'end');
      await p.up.waitTcpClose();
      assertClean(p);
    });

    test('7.11 the client breaks the protocol: it gets 1002, the backend a masked 1001', T, async () => {
      count('7');
      const p = await pair('client-fails');
      await p.client.send(text('reserved bits', { rsv: 4 }));
      const atClient = await p.client.waitCloseFrame();
      assert.equal(atClient.code, 1002);
      const atUp = await p.up.waitCloseFrame();
      assert.equal(atUp.code, 1001, 'the backend should hear that its client is going away');
      await p.client.sendClose(close(1002));
      await p.up.sendClose(S.close(1001));
      p.up.end();
      assert.equal(await p.client.waitTcpClose(), 'end');
      await p.up.waitTcpClose();
      assertClean(p);
    });

    test('7.8 after the close handshake Tether leaves the first TCP close to the backend (section 7.1.1)', T, async () => {
      count('7');
      const p = await pair('server-closes-first');
      await p.client.sendClose(close(1000));
      await p.up.waitCloseFrame();
      await p.up.sendClose(S.close(1000));
      await p.client.waitCloseFrame();
      await p.client.waitTcpClose();
      // The client's connection is closed, so Tether has handled the backend's reply; had it
      // closed the upstream TCP connection too, the FIN would be here within this short guard.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(p.up.closedBy, null, 'Tether closed the upstream TCP connection before the backend did');
      p.up.end();
      assert.equal(await p.up.waitTcpClose(), 'end');
      assertClean(p);
    });
  });
  failures('7 close', [
    ...[0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535].map((code) => ({
      id: `7.9.${code}`,
      title: `backend close with code ${code}`,
      send: S.close(code),
      code: 1002,
      sentClose: true,
    })),
    { id: '7.10', title: 'backend close with a 1-byte payload', send: S.frame({ opcode: OP.CLOSE, payload: hex('03') }), code: 1002, sentClose: true },
    { id: '7.11', title: 'backend close with a 124-byte reason', send: S.frame({ opcode: OP.CLOSE, payload: closePayload(1000, asciiOf(124)) }), code: 1002, sentClose: true },
  ]);

  // -------------------------------------------------------------------------------------------
  // 9 limits (section 10.4, 7.4.1 1009): tether_max_message holds for the backend's messages too.
  describe('9 limits', () => {
    test('9.1 the backend sends exactly tether_max_message, in one frame and in 4 KiB fragments', T, async () => {
      count('9', 2);
      const p = await pair('limit-down');
      const big = binaryOf(LIMIT, 9);
      await p.up.send(S.binary(big));
      await p.up.send(S.fragmented(OP.BINARY, pieces(big, 4096)));
      await clientEvents(p, 2);
      for (const e of p.client.dataEvents) assert.ok(e.data.equals(big), 'big message altered');
      await finish(p);
    });

    test('9.2 the client sends exactly tether_max_message: the backend gets it in one masked frame', T, async () => {
      count('9');
      const p = await pair('limit-up');
      const big = asciiOf(LIMIT, 9);
      await p.client.send(fragmented(OP.TEXT, pieces(big, 65536)));
      await upEvents(p, 1);
      assert.ok(p.up.dataEvents[0].data.equals(big));
      await finish(p);
    });
  });
  failures('9 limits', [
    { id: '9.3', title: 'backend frame announcing tether_max_message + 1 (header only)', send: S.frame({ opcode: OP.BINARY, payload: '', length: LIMIT + 1 }), code: 1009 },
    {
      id: '9.4',
      title: 'backend fragments adding up to tether_max_message + 1',
      send: [S.binary(binaryOf(LIMIT - 10), { fin: false }), S.frame({ opcode: OP.CONT, payload: '', length: 11 })],
      code: 1009,
    },
  ]);

  test('masking keys are not reused across the run', () => {
    const keys = backend.connections.flatMap((c) => c.frames.filter((f) => f.masked).map((f) => f.key.toString('hex')));
    const distinct = new Set(keys).size;
    console.log(`# ${keys.length} masked frames from Tether, ${distinct} distinct keys; cases per section: ${JSON.stringify(counts)}`);
    assert.ok(keys.length > 1000);
    assert.ok(distinct >= keys.length - 2, `masking keys repeat: ${distinct} distinct of ${keys.length}`);
  });
});
