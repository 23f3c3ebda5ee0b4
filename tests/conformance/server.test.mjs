// WebSocket conformance of Tether's SERVER side, organised like the Autobahn testsuite's
// sections 1-7 and 9: a raw client (tests/conformance/lib) sends well-formed and malformed frames
// through Tether to an echo backend (Node's `ws`) and checks what comes back against RFC 6455:
// the frames (each one also checked against the sender rules: unmasked, RSV 0, minimal length,
// valid close codes ...), the close code, and that the TCP connection closes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mapLimit, startNodeWsBackend, startTether, settleAll } from '../integration/lib/harness.mjs';
import { cases as s1 } from './cases/s1_framing.mjs';
import { cases as s2 } from './cases/s2_ping_pong.mjs';
import { cases as s3 } from './cases/s3_reserved_bits.mjs';
import { cases as s4 } from './cases/s4_opcodes.mjs';
import { cases as s5 } from './cases/s5_fragmentation.mjs';
import { groups as s6 } from './cases/s6_utf8.mjs';
import { cases as s7 } from './cases/s7_close.mjs';
import { cases as s9 } from './cases/s9_limits.mjs';
import { LIMIT } from './cases/util.mjs';
import { runServerCase } from './lib/server_runner.mjs';

// Cases of a group run this many at a time (each on its own connection and backend connection),
// and groups of a section GROUPS at a time: a broken build then fails in seconds, not minutes.
const PARALLEL = 8;
const GROUPS = 4;

const SECTIONS = [
  ['1 framing and payload lengths', s1],
  ['2 pings and pongs', s2],
  ['3 reserved bits', s3],
  ['4 opcodes', s4],
  ['5 fragmentation', s5],
  ['6 UTF-8', s6],
  ['7 close', s7],
  ['9 limits', s9],
];

describe("conformance of tether's server side (raw client -> tether -> ws echo backend)", () => {
  let backend;
  let tether;
  const closedBy = { end: 0, reset: 0 };

  before(async () => {
    backend = await startNodeWsBackend();
    tether = await startTether(`
error_log stderr notice;
server {
    listen 127.0.0.1:0;
    location /echo/ {
        tether_pass ws://127.0.0.1:${backend.port};
        tether_max_message ${LIMIT};
    }
}
`);
  });

  after(async () => {
    await settleAll([tether?.stop(), backend?.close()]);
  });

  for (const [section, table] of SECTIONS) {
    // Section 6 comes in groups (one per UTF-8 vector); the others are one group per case.
    const groups = table[0]?.cases ? table : table.map((c) => ({ name: `${c.id} ${c.title}`, cases: [c] }));
    describe(section, { concurrency: GROUPS }, () => {
      for (const g of groups) {
        test(g.name, { timeout: 30_000 }, async (t) => {
          const failures = [];
          await mapLimit(g.cases, PARALLEL, async (c) => {
            try {
              const r = await runServerCase(tether.port, c);
              closedBy[r.closedBy]++;
            } catch (err) {
              failures.push(`${c.id} ${c.title}: ${err.message}`);
            }
          });
          if (g.cases.length > 1) t.diagnostic(`${g.cases.length} cases`);
          assert.deepEqual(failures, [], `${failures.length} of ${g.cases.length} cases failed:\n${failures.join('\n\n')}`);
        });
      }
    });
  }

  test('case count', () => {
    const counts = SECTIONS.map(([s, table]) => `${s.split(' ')[0]}: ${table[0]?.cases ? table.reduce((n, g) => n + g.cases.length, 0) : table.length}`);
    console.log(`# cases per section: ${counts.join(', ')}; TCP closes by FIN ${closedBy.end}, by reset ${closedBy.reset}`);
  });
});
