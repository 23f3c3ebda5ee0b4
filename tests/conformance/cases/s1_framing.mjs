// Section 1: framing and payload lengths.
// RFC 6455 section 5.2: the payload length is 7 bits (0-125), or 126 + 16 bits, or 127 + 64 bits
// whose most significant bit MUST be 0. A sender MUST use the minimal form; Tether as a receiver
// accepts a non-minimal one (the RFC asks nothing of receivers here, and codec.h documents it)
// but must itself always send the minimal form (every frame it sends is checked for that).
// Section 5.1/5.3: a server MUST close the connection on an unmasked client frame (1002, 7.4.1).
import { OP, binary, encodeFrame, text } from '../lib/frames.mjs';
import { asciiOf, binaryOf, binEv, textEv } from './util.mjs';

const SIZES = [0, 1, 125, 126, 127, 128, 65535, 65536, 1 << 20];

export const cases = [];

// 1.1.x text, 1.2.x binary: every length boundary, echoed byte for byte (section 5.2, 5.6).
SIZES.forEach((n, i) => {
  const t = asciiOf(n, i);
  cases.push({ id: `1.1.${i + 1}`, title: `text, ${n} bytes`, steps: [{ send: text(t) }], expect: [textEv(t)] });
});
SIZES.forEach((n, i) => {
  const b = binaryOf(n, i);
  cases.push({ id: `1.2.${i + 1}`, title: `binary, ${n} bytes`, steps: [{ send: binary(b) }], expect: [binEv(b)] });
});

// 1.3.x the same frame split across TCP writes: the decoder must not care where reads end.
{
  const t = asciiOf(65536, 3);
  cases.push({ id: '1.3.1', title: 'text 65536 bytes, written in chops of 997', steps: [{ send: text(t), chop: 997 }], expect: [textEv(t)] });
  const b = binaryOf(65536, 3);
  cases.push({ id: '1.3.2', title: 'binary 65536 bytes, written in chops of 997', steps: [{ send: binary(b), chop: 997 }], expect: [binEv(b)] });
  const s = asciiOf(130, 5); // a 16-bit length header: every header byte on its own
  cases.push({ id: '1.3.3', title: 'text 130 bytes, written octet by octet', steps: [{ send: text(s), chop: 'octet' }], expect: [textEv(s)] });
  const l = binaryOf(70000, 5); // a 64-bit length header
  const lf = binary(l);
  cases.push({ id: '1.3.4', title: 'binary 70000 bytes, first 14 octets one by one', steps: [{ send: lf.subarray(0, 14), chop: 'octet' }, { send: lf.subarray(14) }], expect: [binEv(l)] });
}

// 1.4.x length forms (section 5.2).
{
  const five = Buffer.from('Hello');
  cases.push({ id: '1.4.1', title: '5-byte text in the 16-bit length form (non-minimal, accepted)', steps: [{ send: text(five, { lenForm: 16 }) }], expect: [textEv(five)] });
  cases.push({ id: '1.4.2', title: '5-byte text in the 64-bit length form (non-minimal, accepted)', steps: [{ send: text(five, { lenForm: 64 }) }], expect: [textEv(five)] });
  const mid = binaryOf(300, 1);
  cases.push({ id: '1.4.3', title: '300-byte binary in the 64-bit length form (non-minimal, accepted)', steps: [{ send: binary(mid, { lenForm: 64 }) }], expect: [binEv(mid)] });
  cases.push({ id: '1.4.4', title: 'empty binary in the 16-bit length form', steps: [{ send: binary('', { lenForm: 16 }) }], expect: [binEv('')] });
  const high = Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 5]);
  cases.push({
    id: '1.4.5',
    title: '64-bit length with the most significant bit set -> 1002',
    steps: [{ send: encodeFrame({ opcode: OP.BINARY, payload: 'Hello', rawLen64: high }) }],
    close: { fail: 1002 },
  });
  const huge = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  cases.push({
    id: '1.4.6',
    title: '64-bit length of 2^64-1 -> 1002 (before any payload)',
    steps: [{ send: encodeFrame({ opcode: OP.TEXT, payload: '', rawLen64: huge }) }],
    close: { fail: 1002 },
  });
}

// 1.5.x masking (sections 5.1, 5.3).
{
  const t = Buffer.from('masked with a zero key');
  cases.push({ id: '1.5.1', title: 'an all-zero masking key is a valid key', steps: [{ send: text(t, { mask: Buffer.alloc(4) }) }], expect: [textEv(t)] });
  cases.push({ id: '1.5.2', title: 'unmasked text from the client -> 1002', steps: [{ send: text('not masked', { mask: false }) }], close: { fail: 1002 } });
  cases.push({ id: '1.5.3', title: 'unmasked ping from the client -> 1002', steps: [{ send: encodeFrame({ opcode: OP.PING, payload: 'x', mask: false }) }], close: { fail: 1002 } });
  cases.push({
    id: '1.5.4',
    title: 'a masked message, then an unmasked one -> echo of the first, then 1002',
    steps: [{ send: [text('first'), text('second', { mask: false })] }],
    expect: [textEv('first')],
    nonStrict: true,
    close: { fail: 1002 },
  });
}

// 1.6.x several frames in one TCP write, and messages kept in order (section 5.4: no reordering).
{
  const msgs = Array.from({ length: 10 }, (_, i) => asciiOf(10 + i * 30, i));
  cases.push({ id: '1.6.1', title: '10 text messages in one write, echoed in order', steps: [{ send: Buffer.concat(msgs.map((m) => text(m))) }], expect: msgs.map(textEv) });
  const mixed = [binaryOf(200, 1), asciiOf(70000, 2), binaryOf(0), asciiOf(126, 3)];
  cases.push({
    id: '1.6.2',
    title: 'binary, text, binary, text of mixed length forms in one write',
    steps: [{ send: Buffer.concat([binary(mixed[0]), text(mixed[1]), binary(mixed[2]), text(mixed[3])]) }],
    expect: [binEv(mixed[0]), textEv(mixed[1]), binEv(mixed[2]), textEv(mixed[3])],
  });
}
