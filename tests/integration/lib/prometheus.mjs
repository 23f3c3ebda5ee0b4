// A line-by-line checker and parser of the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), strict enough to catch what a
// scraper would reject or silently misread:
//   - every line ends with "\n" (the last one included); empty lines are allowed;
//   - "# HELP name text" and "# TYPE name type" name valid metric names; HELP text escapes only
//     "\\" and "\n"; TYPE is counter|gauge|summary|histogram|untyped; each at most once per
//     family, and both before the first sample of their family (other "#" lines are comments);
//   - samples: name{label="value",...} value [timestamp]: valid metric and label names (label
//     names not starting with "__"), no label repeated, label values quoted with only \\ \" \n
//     escapes, values Go-float (decimal, exponent, +Inf, -Inf, NaN), timestamps integers;
//   - every sample belongs to a family declared by TYPE (name, or name_sum / name_count /
//     name{quantile} for a summary, name_bucket{le} / _sum / _count for a histogram); a family's
//     samples come in one group (no family interleaved with another); no series twice;
//   - counters' family names end in "_total" (checked when opts.counterSuffix, default true),
//     counter values are not negative;
//   - summaries: quantile samples carry "quantile" with a value in [0, 1], _sum and _count do
//     not, and every label set with quantiles has its _sum and _count;
//   - opts.prefix: every metric name starts with it.
// Violations throw an Error naming the line number and the line.

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'summary', 'histogram', 'untyped']);
// Go's strconv.ParseFloat as Prometheus accepts it in the text format.
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const INT = /^-?\d+$/;

/** A Go-float text as a number (+Inf, -Inf, NaN included). */
export function parseFloatValue(text) {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  return Number(text);
}

/** The canonical key of a series: its name and its labels sorted by name. */
export function seriesKey(name, labels) {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${parts.join(',')}}`;
}

/**
 * Parses the label set starting at `s[pos]` === '{'. Returns { labels, end } where end is the
 * index just past '}'. Throws with a reason on any deviation.
 */
function parseLabels(s, pos, fail) {
  const labels = {};
  let i = pos + 1;
  const skipSpaces = () => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  skipSpaces();
  if (s[i] === '}') return { labels, end: i + 1 };
  for (;;) {
    skipSpaces();
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) fail(`a label name expected at column ${i + 1}`);
    const name = m[0];
    if (!LABEL_NAME.test(name)) fail(`invalid label name ${JSON.stringify(name)}`);
    if (name.startsWith('__')) fail(`label name ${JSON.stringify(name)} is reserved (starts with "__")`);
    if (Object.hasOwn(labels, name)) fail(`label ${JSON.stringify(name)} repeated`);
    i += name.length;
    skipSpaces();
    if (s[i] !== '=') fail(`"=" expected after label ${name} at column ${i + 1}`);
    i++;
    skipSpaces();
    if (s[i] !== '"') fail(`label ${name}: a quoted value expected at column ${i + 1}`);
    i++;
    let value = '';
    for (;;) {
      if (i >= s.length) fail(`label ${name}: unterminated value`);
      const c = s[i];
      if (c === '"') {
        i++;
        break;
      }
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else fail(`label ${name}: invalid escape "\\${e ?? ''}" in its value`);
        i += 2;
        continue;
      }
      if (c === '\n') fail(`label ${name}: a raw newline in its value`);
      value += c;
      i++;
    }
    labels[name] = value;
    skipSpaces();
    if (s[i] === ',') {
      i++;
      skipSpaces();
      if (s[i] === '}') return { labels, end: i + 1 }; // a trailing comma is allowed
      continue;
    }
    if (s[i] === '}') return { labels, end: i + 1 };
    fail(`"," or "}" expected at column ${i + 1}`);
  }
}

/**
 * Checks `text` against the exposition format (see the top of this file) and returns
 *   { families: Map<name, { name, type, help, samples: [sample] }>,
 *     samples: [{ line, name, family, labels, value, valueText, timestamp }] }
 */
export function parseExposition(text, { prefix = '', counterSuffix = true } = {}) {
  if (typeof text !== 'string') throw new Error('the exposition is not a string');
  if (text.length && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const lines = text.split('\n');
  lines.pop(); // after the final "\n"
  const families = new Map();
  const helpSeen = new Set();
  const samples = [];
  const series = new Set();
  const closedFamilies = new Set(); // families whose group of samples has ended
  let current = null; // the family of the previous sample
  const family = (name) => {
    if (!families.has(name)) families.set(name, { name, type: undefined, help: undefined, samples: [] });
    return families.get(name);
  };

  lines.forEach((line, idx) => {
    const n = idx + 1;
    const fail = (why) => {
      throw new Error(`exposition line ${n}: ${why}\n  | ${line}`);
    };
    if (line.includes('\r')) fail('a carriage return');
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name)) fail(`invalid metric name ${JSON.stringify(name)} in # ${kind}`);
      if (prefix && !name.startsWith(prefix)) fail(`metric ${name} does not start with ${prefix}`);
      const f = family(name);
      if (f.samples.length) fail(`# ${kind} ${name} after samples of that family`);
      if (kind === 'HELP') {
        if (helpSeen.has(name)) fail(`a second # HELP for ${name}`);
        helpSeen.add(name);
        // Only \\ and \n are escapes in HELP text.
        let help = '';
        for (let i = 0; i < rest.length; i++) {
          if (rest[i] === '\\') {
            const e = rest[i + 1];
            if (e === '\\') help += '\\';
            else if (e === 'n') help += '\n';
            else fail(`invalid escape "\\${e ?? ''}" in # HELP text`);
            i++;
          } else {
            help += rest[i];
          }
        }
        f.help = help;
      } else {
        const type = rest.trim();
        if (!TYPES.has(type)) fail(`unknown type ${JSON.stringify(type)}`);
        if (f.type !== undefined) fail(`a second # TYPE for ${name}`);
        f.type = type;
        if (type === 'counter' && counterSuffix && !name.endsWith('_total')) fail(`counter ${name} does not end in _total`);
      }
      return;
    }

    // A sample.
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) fail('a metric name expected');
    const name = nm[0];
    if (prefix && !name.startsWith(prefix)) fail(`metric ${name} does not start with ${prefix}`);
    let pos = name.length;
    let labels = {};
    if (line[pos] === '{') {
      const r = parseLabels(line, pos, fail);
      labels = r.labels;
      pos = r.end;
    }
    const rest = line.slice(pos);
    const vm = /^[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*$/.exec(rest);
    if (!vm) fail('a value (and an optional timestamp) expected after the name and labels');
    const [, valueText, tsText] = vm;
    if (!FLOAT.test(valueText)) fail(`invalid value ${JSON.stringify(valueText)}`);
    if (tsText !== undefined && !INT.test(tsText)) fail(`invalid timestamp ${JSON.stringify(tsText)}`);
    const value = parseFloatValue(valueText);

    // Which declared family the sample belongs to.
    let fam = families.get(name);
    let role = 'value';
    if (!fam || fam.type === undefined) {
      const sm = /^(.*)_(sum|count|bucket)$/.exec(name);
      const base = sm && families.get(sm[1]);
      if (base && (base.type === 'summary' || base.type === 'histogram') && (sm[2] !== 'bucket' || base.type === 'histogram')) {
        fam = base;
        role = sm[2];
      }
    }
    if (!fam || fam.type === undefined) fail(`sample ${name} of no family declared by # TYPE before it`);
    if (fam.type === 'summary' && role === 'value' && !Object.hasOwn(labels, 'quantile')) {
      fail(`summary ${fam.name}: a sample without "quantile" (only _sum and _count may lack it)`);
    }
    if (fam.type === 'summary' && (role === 'sum' || role === 'count') && Object.hasOwn(labels, 'quantile')) {
      fail(`summary ${fam.name}: ${name} must not carry "quantile"`);
    }
    if (fam.type === 'summary' && role === 'value') {
      const q = labels.quantile;
      if (!FLOAT.test(q) || !(parseFloatValue(q) >= 0 && parseFloatValue(q) <= 1)) fail(`quantile ${JSON.stringify(q)} is not a number in [0, 1]`);
    }
    if (fam.type === 'histogram' && role === 'value') fail(`histogram ${fam.name}: a sample that is not _bucket, _sum or _count`);
    if (fam.type === 'histogram' && role === 'bucket' && !Object.hasOwn(labels, 'le')) fail(`histogram ${fam.name}: a _bucket without "le"`);
    if (fam.type === 'counter' && (Number.isNaN(value) || value < 0)) fail(`counter ${name} has the value ${valueText}`);
    if ((role === 'count' || role === 'bucket') && !(Number.isInteger(value) && value >= 0)) {
      fail(`${name} must be a non-negative integer count, got ${valueText}`);
    }
    if (fam.help === undefined) fail(`sample ${name} before the # HELP of ${fam.name}`);

    // One group per family.
    if (current !== fam) {
      if (closedFamilies.has(fam.name)) fail(`samples of ${fam.name} are not in one group (interleaved with another family)`);
      if (current) closedFamilies.add(current.name);
      current = fam;
    }
    const key = seriesKey(name, labels);
    if (series.has(key)) fail(`series ${key} appears twice`);
    series.add(key);
    const sample = { line: n, name, family: fam.name, role, labels, value, valueText, timestamp: tsText === undefined ? undefined : Number(tsText) };
    fam.samples.push(sample);
    samples.push(sample);
  });

  // Summaries: every label set with quantiles has _sum and _count, and the other way round.
  for (const fam of families.values()) {
    if (fam.type !== 'summary') continue;
    const sets = new Map(); // labels without quantile → roles seen
    for (const s of fam.samples) {
      const { quantile, ...rest } = s.labels;
      const k = seriesKey('', rest);
      if (!sets.has(k)) sets.set(k, new Set());
      sets.get(k).add(s.role);
    }
    for (const [k, roles] of sets) {
      for (const r of ['value', 'sum', 'count']) {
        if (!roles.has(r)) {
          throw new Error(`summary ${fam.name}${k}: no ${r === 'value' ? 'quantile' : `_${r}`} sample`);
        }
      }
    }
  }
  for (const fam of families.values()) {
    if (fam.type === undefined) throw new Error(`# HELP ${fam.name} without a # TYPE`);
  }
  return { families, samples };
}

/**
 * The value of the one sample `name` whose labels are exactly `labels`; throws when there is
 * none (naming what there is).
 */
export function sampleValue(parsed, name, labels = {}) {
  const key = seriesKey(name, labels);
  const found = parsed.samples.find((s) => seriesKey(s.name, s.labels) === key);
  if (!found) {
    const similar = parsed.samples.filter((s) => s.name === name).map((s) => seriesKey(s.name, s.labels));
    throw new Error(`no sample ${key} in the exposition; samples of ${name}: ${similar.join(' ') || '(none)'}`);
  }
  return found.value;
}
