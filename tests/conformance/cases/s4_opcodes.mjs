// Section 4: opcodes.
// RFC 6455 section 5.2: opcodes 0x3-0x7 are reserved for further non-control frames and
// 0xB-0xF for further control frames; a frame with an unknown opcode MUST fail the connection
// (section 5.2 "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
// Connection_"), with 1002 (section 7.4.1). A message echoed before the bad frame is
// non-strict (it may still be on its way through the backend).
import { OP, cont, encodeFrame, ping, text } from '../lib/frames.mjs';
import { binaryOf, textEv } from './util.mjs';

const hello = 'Hello, world!';
const fail = { close: { fail: 1002 } };

export const cases = [];
// 4.1.x data opcodes, 4.2.x control opcodes.
for (const [group, ops] of [[1, [3, 4, 5, 6, 7]], [2, [0xb, 0xc, 0xd, 0xe, 0xf]]]) {
  ops.forEach((op, i) => {
    const id = `4.${group}.${i + 1}`;
    const kind = group === 1 ? 'data' : 'control';
    if (i === 0) {
      cases.push({ id, title: `reserved ${kind} opcode ${op}, empty`, steps: [{ send: encodeFrame({ opcode: op, payload: '' }) }], ...fail });
    } else if (i === 1) {
      cases.push({ id, title: `reserved ${kind} opcode ${op} with payload`, steps: [{ send: encodeFrame({ opcode: op, payload: 'reserved opcode payload' }) }], ...fail });
    } else {
      // A valid message, then the reserved opcode, then a ping that must not be answered.
      const chop = i === 2 ? undefined : i === 3 ? 'frame' : 'octet';
      cases.push({
        id,
        title: `text, reserved ${kind} opcode ${op}, ping${chop ? ` (${chop} by ${chop})` : ''}`,
        steps: [
          { send: text(hello), chop },
          { waitEvents: 1 },
          { send: [encodeFrame({ opcode: op, payload: binaryOf(i) }), ping(hello)], chop },
        ],
        expect: [textEv(hello)],
        ...fail,
      });
    }
  });
}
cases.push(
  {
    id: '4.3.1',
    title: 'reserved data opcode 3 inside a fragmented message',
    steps: [{ send: [text('frag', { fin: false }), encodeFrame({ opcode: 3, payload: 'x' }), cont('ment')] }],
    ...fail,
  },
  {
    id: '4.3.2',
    title: 'reserved control opcode 0xB with FIN clear inside a fragmented message',
    steps: [{ send: [text('frag', { fin: false }), encodeFrame({ opcode: 0xb, payload: 'x', fin: false }), cont('ment')] }],
    ...fail,
  },
  {
    id: '4.3.3',
    title: 'reserved data opcode 7 in a 64-bit length frame: failed at the first header byte',
    steps: [{ send: encodeFrame({ opcode: 7, payload: binaryOf(70000) }).subarray(0, 1) }, { expectClose: 1002 }],
    ...fail,
  },
  // Sanity for the table above: opcode 2 right after opcode 1 is fine, so only the reserved
  // value made the difference.
  { id: '4.3.4', title: 'opcodes 1 and 2 back to back are fine', steps: [{ send: [text(hello), encodeFrame({ opcode: OP.BINARY, payload: hello })] }], expect: [textEv(hello), { type: 'message', opcode: OP.BINARY, data: Buffer.from(hello) }] },
);
