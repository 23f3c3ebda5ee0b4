// Section 6: UTF-8 in text messages.
// RFC 6455 section 5.6: text payloads are UTF-8 (RFC 3629: no overlong forms, no surrogates
// U+D800-DFFF, nothing above U+10FFFF); section 8.1: an endpoint that receives invalid UTF-8 in
// a text message MUST fail the connection, with 1007 (section 7.4.1). Validity is of the whole
// message, so a code point may be split across fragments; but a prefix that no continuation can
// make valid may be failed at once, and Autobahn (case 6.4.x) expects exactly that: the close
// must come before the rest of the message is sent. Every vector is sent as one frame, split into
// 2 fragments at every byte position, as 1-byte fragments, and as one frame written octet by
// octet; whenever the bad byte is already in what was sent, the close is awaited there (fail-fast).
import { OP, binary, encodeFrame, firstInvalidByte, fragmented, hex, isValidUtf8, ping, text } from '../lib/frames.mjs';
import { binEv, pongEv, textEv } from './util.mjs';

// Vectors from RFC 3629 and Markus Kuhn's UTF-8 decoder stress test (as used by Autobahn 6.x).
const VALID = [
  ['ascii and Latin-1 letters', Buffer.from('Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!')],
  ['kosme', hex('ce ba e1 bd b9 cf 83 ce bc ce b5')],
  ['U+0000', hex('00')],
  ['U+007F', hex('7f')],
  ['U+0080', hex('c2 80')],
  ['U+07FF', hex('df bf')],
  ['U+0800', hex('e0 a0 80')],
  ['U+D7FF', hex('ed 9f bf')],
  ['U+E000', hex('ee 80 80')],
  ['U+FFFD', hex('ef bf bd')],
  ['U+FFFE (noncharacter, valid UTF-8)', hex('ef bf be')],
  ['U+FFFF', hex('ef bf bf')],
  ['U+FDD0 (noncharacter)', hex('ef b7 90')],
  ['U+10000', hex('f0 90 80 80')],
  ['U+1FFFF', hex('f0 9f bf bf')],
  ['U+10FFFE', hex('f4 8f bf be')],
  ['U+10FFFF', hex('f4 8f bf bf')],
  ['a, euro, G clef, e-acute', hex('61 e2 82 ac f0 9d 84 9e c3 a9')],
  ['empty', Buffer.alloc(0)],
];

const INVALID = [
  ['kosme, a surrogate, "edited"', hex('ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64')],
  ['U+110000 (above U+10FFFF)', hex('f4 90 80 80')],
  ['F5 lead (above U+10FFFF)', hex('f5 80 80 80')],
  ['old 4-byte form of U+1FFFFF', hex('f7 bf bf bf')],
  ['5-byte sequence', hex('f8 88 80 80 80')],
  ['6-byte sequence', hex('fc 84 80 80 80 80')],
  ['lone continuation 80', hex('80')],
  ['lone continuation BF', hex('bf')],
  ['continuations 80 BF 80 BF', hex('80 bf 80 bf')],
  ['text then a lone continuation', Buffer.concat([Buffer.from('Hello'), hex('80'), Buffer.from('world')])],
  ['lonely start C0 + space', hex('c0 20')],
  ['lonely start DF + space', hex('df 20')],
  ['lonely start E0 + space', hex('e0 20')],
  ['lonely start EF + space', hex('ef 20')],
  ['lonely start F0 + space', hex('f0 20')],
  ['lonely start F4 + space', hex('f4 20')],
  ['truncated 2-byte (C2 at the end)', hex('c2')],
  ['truncated 3-byte (E0 A0)', hex('e0 a0')],
  ['truncated 3-byte (EF BF)', hex('ef bf')],
  ['truncated 4-byte (F0 90 80)', hex('f0 90 80')],
  ['truncated 4-byte (F4 8F BF)', hex('f4 8f bf')],
  ['text then a truncated euro sign', Buffer.concat([Buffer.from('abc'), hex('e2 82')])],
  ['concatenated incomplete sequences', hex('c2 e0 a0 f0 90 80')],
  ['impossible byte FE', hex('fe')],
  ['impossible byte FF', hex('ff')],
  ['impossible bytes FE FE FF FF', hex('fe fe ff ff')],
  ['text then F5', Buffer.concat([Buffer.from('Hello'), hex('f5')])],
  ['overlong "/" in 2 bytes', hex('c0 af')],
  ['overlong "/" in 3 bytes', hex('e0 80 af')],
  ['overlong "/" in 4 bytes', hex('f0 80 80 af')],
  ['maximum overlong 2 bytes', hex('c1 bf')],
  ['maximum overlong 3 bytes', hex('e0 9f bf')],
  ['maximum overlong 4 bytes', hex('f0 8f bf bf')],
  ['overlong NUL in 2 bytes', hex('c0 80')],
  ['overlong NUL in 3 bytes', hex('e0 80 80')],
  ['overlong NUL in 4 bytes', hex('f0 80 80 80')],
  ['surrogate U+D800', hex('ed a0 80')],
  ['surrogate U+DB7F', hex('ed ad bf')],
  ['surrogate U+DB80', hex('ed ae 80')],
  ['surrogate U+DBFF', hex('ed af bf')],
  ['surrogate U+DC00', hex('ed b0 80')],
  ['surrogate U+DF80', hex('ed be 80')],
  ['surrogate U+DFFF', hex('ed bf bf')],
  ['paired surrogates U+D800 U+DC00', hex('ed a0 80 ed b0 80')],
  ['paired surrogates U+DBFF U+DFFF', hex('ed af bf ed bf bf')],
];

// The oracle must agree with the tables, or the tables are wrong.
for (const [name, v] of VALID) if (!isValidUtf8(v)) throw new Error(`VALID vector ${name} is not valid UTF-8`);
for (const [name, v] of INVALID) if (isValidUtf8(v)) throw new Error(`INVALID vector ${name} is valid UTF-8`);

/**
 * The cases for one vector V. When V is invalid, `bad` is the index of the byte that makes its
 * prefix invalid (-1: only the end is, a truncated sequence), and a case that has sent that byte
 * awaits the close before sending more.
 */
function vectorCases(id, v, valid) {
  const bad = valid ? -1 : firstInvalidByte(v);
  const out = [];
  const ok = { expect: [textEv(v)] };
  const failEnd = { close: { fail: 1007 } };
  out.push({ id: `${id}.1`, title: 'one frame', steps: [{ send: text(v) }], ...(valid ? ok : failEnd) });
  for (let k = 1; k < v.length; k++) {
    const first = text(v.subarray(0, k), { fin: false });
    const rest = encodeFrame({ opcode: OP.CONT, payload: v.subarray(k) });
    const steps = !valid && bad >= 0 && bad < k ? [{ send: first }, { expectClose: 1007 }] : [{ send: [first, rest] }];
    out.push({ id: `${id}.2.${k}`, title: `2 fragments split at byte ${k}`, steps, ...(valid ? ok : failEnd) });
  }
  if (v.length > 1) {
    const frames = [...v].map((b, i) => encodeFrame({ opcode: i ? OP.CONT : OP.TEXT, payload: Buffer.from([b]), fin: i === v.length - 1 }));
    const steps = !valid && bad >= 0 ? [{ send: frames.slice(0, bad + 1) }, { expectClose: 1007 }] : [{ send: frames }];
    out.push({ id: `${id}.3`, title: '1-byte fragments', steps, ...(valid ? ok : failEnd) });
  }
  if (v.length > 0) {
    const frame = text(v);
    const headerLen = frame.length - v.length;
    const steps = !valid && bad >= 0 ? [{ send: frame.subarray(0, headerLen + bad + 1), chop: 'octet' }, { expectClose: 1007 }] : [{ send: frame, chop: 'octet' }];
    out.push({ id: `${id}.4`, title: 'one frame written octet by octet', steps, ...(valid ? ok : failEnd) });
  }
  return out;
}

export const groups = [
  ...VALID.map(([name, v], i) => ({ name: `6.1.${i + 1} valid: ${name}`, cases: vectorCases(`6.1.${i + 1}`, v, true) })),
  ...INVALID.map(([name, v], i) => ({ name: `6.2.${i + 1} invalid: ${name}`, cases: vectorCases(`6.2.${i + 1}`, v, false) })),
];

// 6.3.x fail-fast across frames and within a frame, and what is not text.
const kosme = hex('ce ba e1 bd b9 cf 83 ce bc ce b5');
const tooHigh = hex('f4 90 80 80');
const edited = Buffer.from('edited');
{
  const whole = Buffer.concat([kosme, tooHigh, edited]);
  const frame = text(whole);
  const upToBad = frame.length - whole.length + kosme.length + 2; // header, kosme, F4 90
  groups.push({
    name: '6.3 fail-fast and non-text payloads',
    cases: [
      {
        id: '6.3.1',
        title: 'valid fragment, then the fragment with U+110000: closed before the 3rd is sent',
        steps: [
          { send: text(kosme, { fin: false }) },
          { send: encodeFrame({ opcode: OP.CONT, payload: tooHigh, fin: false }) },
          { expectClose: 1007 },
          { send: encodeFrame({ opcode: OP.CONT, payload: edited }) },
        ],
        close: { fail: 1007 },
      },
      {
        id: '6.3.2',
        title: 'one frame: closed right after F4 90, before the rest of its payload',
        steps: [{ send: frame.subarray(0, upToBad) }, { expectClose: 1007 }],
        close: { fail: 1007 },
      },
      {
        id: '6.3.3',
        title: 'one frame in 3 writes: valid part, bad part, rest; closed after the bad part',
        steps: [{ send: frame.subarray(0, upToBad - 2) }, { send: frame.subarray(upToBad - 2, upToBad) }, { expectClose: 1007 }, { send: frame.subarray(upToBad) }],
        close: { fail: 1007 },
      },
      {
        id: '6.3.4',
        title: 'a valid message, then an invalid one: the first is echoed',
        steps: [{ send: text(kosme) }, { waitEvents: 1 }, { send: text(Buffer.concat([kosme, hex('ed a0 80')])) }],
        expect: [textEv(kosme)],
        close: { fail: 1007 },
      },
      {
        id: '6.3.5',
        title: 'invalid UTF-8 in a binary message is just bytes',
        steps: [{ send: binary(hex('ed a0 80 c0 af ff fe')) }],
        expect: [binEv(hex('ed a0 80 c0 af ff fe'))],
      },
      {
        id: '6.3.6',
        title: 'invalid UTF-8 in a ping payload is just bytes',
        steps: [{ send: ping(hex('ed a0 80 c0 af ff fe')) }],
        expect: [pongEv(hex('ed a0 80 c0 af ff fe'))],
      },
      {
        id: '6.3.7',
        title: 'a code point split across fragments with a ping between',
        steps: [{ send: [text(hex('e2 82'), { fin: false }), ping('p'), encodeFrame({ opcode: OP.CONT, payload: hex('ac') })] }],
        expect: [pongEv('p'), textEv(hex('e2 82 ac'))],
      },
      {
        id: '6.3.8',
        title: 'a long valid message (64 KiB of 4-byte code points) in 1000-byte fragments',
        steps: [{ send: fragmented(OP.TEXT, splitEvery(Buffer.from('\u{1F600}'.repeat(16384)), 1000)) }],
        expect: [textEv(Buffer.from('\u{1F600}'.repeat(16384)))],
      },
    ],
  });
}

function splitEvery(b, n) {
  const out = [];
  for (let i = 0; i < b.length; i += n) out.push(b.subarray(i, i + n));
  return out;
}

