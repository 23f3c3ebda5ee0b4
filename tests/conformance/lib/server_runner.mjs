// Runs one server-side conformance case: a raw client connects through Tether to the echo
// backend, plays the case's steps, and checks what it observes against RFC 6455.
//
// A case (the tables are in cases/s*.mjs):
//   id, title
//   steps    what the client does, in order:
//              { send: Buffer | [Buffer], chop?: 'octet' | N | 'frame' }   bytes (a list: one write each)
//              { waitEvents: N }     until N data events (messages, pings, pongs) have arrived
//              { expectClose: CODE } Tether must fail the connection NOW, before the next step
//                                    (fail-fast): the close frame and its code are awaited here
//   expect   data events the client must see, in order: { type: 'message', opcode, data } |
//            { type: 'ping' | 'pong', data }
//   nonStrict  the events seen may stop short of `expect` (an echo still on its way through the
//            backend when Tether failed the connection: Autobahn's "NON-STRICT")
//   close    what ends the case:
//              undefined            the client closes with 1000 once `expect` has arrived and
//                                   Tether must answer 1000
//              { fail: CODE }       Tether must fail the connection with CODE (section 7.1.7)
//              { send: Buffer, expect: CODE | null }  the client closes with this frame; Tether's
//                                   answer has CODE (null: a close frame with no payload)
//              { expect: CODE }     like undefined but the steps already sent the close
//            and in every case the TCP connection must close (section 7.1.1), promptly.
import assert from 'node:assert/strict';
import { OP, close as closeFrame } from './frames.mjs';
import { connectClient } from './peer.mjs';

/** How long the TCP close may take after the close frames crossed (Tether's own close timeout is 5 s). */
export const TCP_CLOSE_GRACE_MS = 2_000;
/** How long a fail-fast step waits for the close (it comes within milliseconds when it comes). */
export const FAIL_FAST_MS = 2_000;

function describeEvent(e) {
  if (!e) return 'nothing';
  if (e.type === 'message') {
    const kind = e.opcode === OP.TEXT ? 'text' : e.opcode === OP.BINARY ? 'binary' : `op${e.opcode}`;
    const shown = e.data.length <= 40 ? ` ${JSON.stringify(e.data.toString('latin1'))}` : '';
    return `${kind}(${e.data.length})${shown}`;
  }
  if (e.type === 'close') return `close ${e.code}`;
  return `${e.type}(${e.data.length}) ${JSON.stringify(e.data.toString('latin1').slice(0, 40))}`;
}

function sameEvent(got, want) {
  if (got.type !== want.type) return false;
  if (want.type === 'message' && got.opcode !== want.opcode) return false;
  return Buffer.from(got.data).equals(Buffer.from(want.data));
}

/** Asserts GOT matches WANT event by event (a prefix of WANT when NONSTRICT). */
export function assertEvents(got, want, nonStrict, ctx) {
  const n = nonStrict ? Math.min(got.length, want.length) : want.length;
  const head = () =>
    `${ctx}\n  expected: [${want.map(describeEvent).join(', ')}]${nonStrict ? ' (or a prefix)' : ''}` +
    `\n  received: [${got.map(describeEvent).join(', ')}]`;
  assert.ok(got.length <= want.length, `more events than expected\n${head()}`);
  if (!nonStrict) assert.equal(got.length, want.length, `wrong number of events\n${head()}`);
  for (let i = 0; i < n; i++) {
    assert.ok(sameEvent(got[i], want[i]), `event ${i} differs: got ${describeEvent(got[i])}, want ${describeEvent(want[i])}\n${head()}`);
  }
}

/**
 * Runs case C against Tether on PORT (a location /echo/ relaying to an echo backend).
 * Resolves to { closedBy } or rejects with an assertion naming the case.
 */
export async function runServerCase(port, c, { prefix = '/echo/' } = {}) {
  const ctx = `case ${c.id} (${c.title})`;
  const peer = await connectClient(port, `${prefix}${encodeURIComponent(c.id)}`);
  try {
    const want = c.expect ?? [];
    const where = () => `${ctx}; client received ${peer.describe()}`;
    for (const step of c.steps) {
      if (step.send !== undefined) {
        const list = Array.isArray(step.send) ? step.send : [step.send];
        for (const buf of list) await peer.send(buf, { chop: step.chop === 'frame' ? undefined : step.chop });
      } else if (step.waitEvents !== undefined) {
        await peer.until(() => peer.dataEvents.length >= step.waitEvents, `${step.waitEvents} events (${ctx})`);
      } else if (step.expectClose !== undefined) {
        // Fail fast: the close must come before the client sends anything more.
        const ev = await peer.waitCloseFrame(FAIL_FAST_MS).catch((err) => {
          throw new Error(`${ctx}: no close frame before the next step (fail-fast): ${err.message}`);
        });
        assert.equal(ev.code, step.expectClose, `close code ${ev.code}, expected ${step.expectClose} (fail-fast step)\n${where()}`);
      } else {
        throw new Error(`${ctx}: unknown step ${JSON.stringify(step)}`);
      }
    }

    const end = c.close ?? {};
    let closeEv;
    if (end.fail !== undefined) {
      closeEv = await peer.waitCloseFrame().catch((err) => {
        throw new Error(`${ctx}: expected Tether to fail the connection with ${end.fail}: ${err.message}`);
      });
      assert.equal(closeEv.code, end.fail, `close code ${closeEv.code}, expected ${end.fail}\n${where()}`);
      // Section 5.5.1: an endpoint that receives a close it did not start answers with one.
      await peer.sendClose(closeFrame(closeEv.code === null ? undefined : closeEv.code));
    } else {
      if (!c.nonStrict) {
        await peer.until(() => peer.dataEvents.length >= want.length || peer.closeReceived, `${want.length} events (${ctx})`);
      }
      if (end.send) await peer.sendClose(end.send);
      else if (end.expect === undefined) await peer.sendClose(closeFrame(1000));
      closeEv = await peer.waitCloseFrame();
      const code = end.expect !== undefined ? end.expect : 1000;
      assert.equal(closeEv.code, code, `close code ${closeEv.code}, expected ${code}\n${where()}`);
    }
    const how = await peer.waitTcpClose(TCP_CLOSE_GRACE_MS + 1_000);
    // Section 7.1.1: a clean close (FIN), not a reset, which may destroy the close frame unread.
    assert.equal(how, 'end', `the TCP connection was reset, not closed\n${where()}`);
    const crossed = Math.max(closeEv.at, peer.closeSentAt ?? 0);
    assert.ok(
      peer.closedAt - crossed <= TCP_CLOSE_GRACE_MS,
      `the TCP connection closed ${peer.closedAt - crossed} ms after the close handshake\n${where()}`,
    );
    assertEvents(peer.dataEvents, want, c.nonStrict, ctx);
    assert.deepEqual(peer.violations, [], `Tether broke RFC 6455 sender rules\n${where()}`);
    return { closedBy: how };
  } finally {
    peer.destroy();
  }
}

