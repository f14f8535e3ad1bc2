// Params, log, lookup, state, the exports and their errors (node --test guest-sdk/js/test/).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  Alert, AlertEvent, Batch, Filter, PluginError, Point, exportAlert, exportFilter,
  formatFloat, integer, log, lookup, params, seriesKey, splitList, state, testing, unsigned,
  encodeSample, decodeSample,
} from '../sluice-sdk.js';

afterEach(() => testing.reset());

const paramError = (name, raw, reason) => ({ name: 'PluginError', message: `parameter \`${name}\` = \`${raw}\`: ${reason}`, index: null });

test('params: unset gives the default, values are trimmed before parsing', () => {
  testing.stubHost({ params: { max: ' 2.5\t', n: '\n42 ', m: '  swap* ', on: ' false ', unit: ' °C ' } });
  assert.equal(params.get('nope'), undefined);
  assert.equal(params.getFloat('nope'), undefined);
  assert.equal(params.getFloat('nope', 100), 100);
  assert.equal(params.getOr('nope', 'x'), 'x');
  assert.equal(params.getFloat('max'), 2.5);
  assert.equal(params.getInt('n'), 42);
  assert.equal(params.getUint('n'), 42);
  assert.equal(params.getString('m'), 'swap*');
  assert.equal(params.get('m'), '  swap* ', 'get is the raw value');
  assert.equal(params.getBool('on'), false);
  assert.equal(params.getString('unit'), '°C');
  assert.deepEqual(params.all(), [['m', '  swap* '], ['max', ' 2.5\t'], ['n', '\n42 '], ['on', ' false '], ['unit', ' °C ']]);
});

test('params: a bad value names parameter, value (as given) and reason, for the whole batch', () => {
  testing.stubHost({
    params: { max: 'abc', n: ' 1.5 ', empty: '   ', yes: 'yes', seuil: 'zéro🚀', hex: '0x10', neg: '-1' },
  });
  assert.throws(() => params.getFloat('max'), paramError('max', 'abc', 'invalid float literal'));
  assert.throws(() => params.getInt('n'), paramError('n', ' 1.5 ', 'invalid digit found in string'));
  assert.throws(() => params.getUint('empty'), paramError('empty', '   ', 'cannot parse integer from empty string'));
  assert.throws(() => params.getFloat('empty'), paramError('empty', '   ', 'cannot parse float from empty string'));
  assert.throws(() => params.getBool('yes'), paramError('yes', 'yes', 'provided string was not `true` or `false`'));
  assert.throws(() => params.getFloat('seuil'), paramError('seuil', 'zéro🚀', 'invalid float literal'));
  assert.throws(() => params.getFloat('hex'), paramError('hex', '0x10', 'invalid float literal'));
  assert.throws(() => params.getUint('neg'), paramError('neg', '-1', 'invalid digit found in string'));
  assert.equal(params.getString('empty'), '', 'strings may be empty');
  try {
    params.getFloat('max');
  } catch (e) {
    assert.ok(e instanceof PluginError);
  }
});

test('params: float syntax as Rust parses it; integer extremes and one past them', () => {
  testing.stubHost({
    params: {
      a: '1e3', b: '-.5', c: '5.', d: 'inf', e: '-Infinity', f: 'NaN', g: '+7',
      lo: '-9223372036854775808', hi: '9223372036854775807', uhi: '18446744073709551615',
      hi1: '9223372036854775808', lo1: '-9223372036854775809', uhi1: '18446744073709551616',
    },
  });
  assert.equal(params.getFloat('a'), 1000);
  assert.equal(params.getFloat('b'), -0.5);
  assert.equal(params.getFloat('c'), 5);
  assert.equal(params.getFloat('d'), Infinity);
  assert.equal(params.getFloat('e'), -Infinity);
  assert.ok(Number.isNaN(params.getFloat('f')));
  assert.equal(params.getInt('g'), 7);
  assert.equal(params.getInt('lo'), -(2n ** 63n));
  assert.equal(params.getInt('hi'), 2n ** 63n - 1n);
  assert.equal(params.getUint('uhi'), 2n ** 64n - 1n);
  assert.throws(() => params.getInt('hi1'), paramError('hi1', '9223372036854775808', 'number too large to fit in target type'));
  assert.throws(() => params.getInt('lo1'), paramError('lo1', '-9223372036854775809', 'number too small to fit in target type'));
  assert.throws(() => params.getUint('uhi1'), paramError('uhi1', '18446744073709551616', 'number too large to fit in target type'));
});

test('params.list splits on commas, trims, drops empty items, keeps non-ASCII and order', () => {
  assert.deepEqual(splitList('a, b ,,c,'), ['a', 'b', 'c']);
  assert.deepEqual(splitList('a;b, c d'), ['a;b', 'c d']);
  assert.deepEqual(splitList(' , ,\t,'), []);
  assert.deepEqual(splitList('zürich, 東京 ,🚀,zürich'), ['zürich', '東京', '🚀', 'zürich']);
  // Trimmed as Rust's str::trim does: U+0085 and U+3000 are whitespace, U+FEFF is not.
  assert.deepEqual(splitList('\u0085a\u0085, \ufeffb\ufeff ,\u3000c\u2000'), ['a', '\ufeffb\ufeff', 'c']);
  testing.stubHost({ params: { m: 'cpu, mem' } });
  assert.deepEqual(params.list('m'), ['cpu', 'mem']);
  assert.deepEqual(params.list('unset'), []);
});

test('without stubs the host helpers say how to get them', () => {
  assert.throws(() => params.get('x'), /testing\.stubHost/);
});

test('log sends level, message and stringified fields', () => {
  const h = testing.stubHost();
  log.info('filtered', { points: 3, ratio: 0.5, table: 'hosts' });
  log.warn('plain');
  log.error('pairs', [['k', 'v'], ['n', 1e21]]);
  log.trace('t');
  log.debug('d', new Map([['a', true]]));
  assert.deepEqual(h.logs, [
    { level: 'info', message: 'filtered', fields: { points: '3', ratio: '0.5', table: 'hosts' } },
    { level: 'warn', message: 'plain', fields: {} },
    { level: 'error', message: 'pairs', fields: { k: 'v', n: '1000000000000000000000' } },
    { level: 'trace', message: 't', fields: {} },
    { level: 'debug', message: 'd', fields: { a: 'true' } },
  ]);
});

test('lookup returns the row without its key column, or undefined', () => {
  testing.stubHost({ lookup: { hosts: { 'web-1': { dc: 'fra', rack: 'r1' } } } });
  assert.deepEqual(lookup.get('hosts', 'web-1'), [['dc', 'fra'], ['rack', 'r1']]);
  assert.deepEqual(lookup.row('hosts', 'web-1'), { dc: 'fra', rack: 'r1' });
  assert.equal(lookup.get('hosts', 'nope'), undefined);
  assert.equal(lookup.get('nope', 'web-1'), undefined);
});

test('state: bytes, strings, JSON, samples; a full state throws a PluginError', () => {
  const h = testing.stubHost({ stateLimit: 4 });
  assert.equal(state.get('k'), undefined);
  state.set('k', [1, 2, 3]);
  assert.deepEqual(state.get('k'), Uint8Array.from([1, 2, 3]));
  state.setString('s', 'Zürich 🚀');
  assert.equal(state.getString('s'), 'Zürich 🚀');
  state.setJSON('j', { a: [1, 'x'] });
  assert.deepEqual(state.getJSON('j'), { a: [1, 'x'] });
  assert.equal(state.getJSON('k'), undefined, 'not JSON');
  state.setSample('smp', -2n, -2.5);
  assert.deepEqual(state.getSample('smp'), [-2n, -2.5]);
  assert.equal(state.getSample('k'), undefined, 'fewer than 16 bytes');
  assert.throws(() => state.set('fifth', [0]), { name: 'PluginError', message: 'state is full (4 keys)' });
  state.remove('k');
  assert.equal(state.get('k'), undefined);
  assert.equal(h.state.size, 3);
});

test('samples have the Rust SDK layout: i64 timestamp then f64 bits, little-endian', () => {
  const expected = new Uint8Array(16);
  expected[0] = 1;
  expected[14] = 0xf0;
  expected[15] = 0x3f;
  assert.deepEqual(encodeSample(1n, 1.0), expected);
  const b = encodeSample(-2n, -2.0);
  assert.deepEqual([...b.subarray(0, 8)], [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  for (const [ts, v] of [[0n, 0], [-(2n ** 63n), -Number.MAX_VALUE], [2n ** 63n - 1n, Infinity], [7n, -0]]) {
    const [t2, v2] = decodeSample(encodeSample(ts, v));
    assert.equal(t2, ts);
    assert.ok(Object.is(v2, v));
  }
  const withTail = new Uint8Array(20);
  withTail.set(encodeSample(-5n, 2.5));
  assert.deepEqual(decodeSample(withTail), [-5n, 2.5]);
});

class MaxV extends Filter {
  constructor() {
    super();
    this.max = params.getFloat('max', 10);
  }

  keep(p) {
    if (p.measurement === 'boom') throw new Error('kaboom');
    const v = p.number('v');
    return v === undefined || v <= this.max;
  }
}
const maxV = exportFilter(MaxV);

test('exportFilter: one verdict per point in order; params read once per batch', () => {
  testing.stubHost({ params: { max: '10' } });
  const batch = Batch.fromPoints([
    new Point('a', 1n).withField('v', 5),
    new Point('b', 2n).withField('v', unsigned(50)),
    new Point('c', 3n).withField('other', integer(1)),
    new Point('d', 4n).withField('v', integer(-1)),
  ]);
  assert.deepEqual(maxV(batch), [true, false, true, true]);
  assert.deepEqual(maxV(batch.raw), [true, false, true, true], 'the raw WIT record works too');
  assert.deepEqual(maxV(Batch.fromPoints([])), []);
});

test('a thrown error fails the batch naming the point; a bad parameter fails it whole', () => {
  testing.stubHost({ params: { max: 'x' } });
  assert.throws(() => maxV(Batch.fromPoints([new Point('a', 0n).withField('v', 1)])), {
    message: 'parameter `max` = `x`: invalid float literal',
    index: null,
  });
  testing.stubHost();
  const batch = Batch.fromPoints([new Point('a', 0n).withField('v', 1), new Point('boom', 0n).withField('v', 1)]);
  assert.throws(() => maxV(batch), (e) => e instanceof PluginError && e.message === 'Error: kaboom' && e.index === 1);
});

test('inside the component the export throws a plain { message, index } record', () => {
  const h = testing.stubHost();
  globalThis[Symbol.for('sluice.plugin.host')].inComponent = true;
  const batch = Batch.fromPoints([new Point('boom', 0n).withField('v', 1)]);
  try {
    maxV(batch);
    assert.fail('throws');
  } catch (e) {
    assert.deepEqual(e, { message: 'Error: kaboom', index: 0 });
    assert.ok(!(e instanceof Error));
  }
  assert.ok(h);
});

class Above90 extends Alert {
  evaluate(w) {
    const max = w.aggregate('max');
    if (max === undefined || !(max > 90) || w.state === 'critical') return null;
    if (w.tag('host') === 'plain') return { state: 'critical', value: max, message: 'a plain record' };
    return w.alert('critical', max, `${seriesKey(w.series)} max ${formatFloat(max)}`);
  }
}
const above90 = exportAlert(Above90);
const win = (host, max, st) => testing.window({ rule: 'hot', measurement: 'cpu', tags: { host }, field: 'usage', aggregates: { mean: 50, max }, state: st });

test('exportAlert returns the alerts raised, in window order, each naming its window by index', () => {
  testing.stubHost();
  const alerts = above90([win('a', 95, 'ok'), win('b', 10, 'ok'), win('c', 99, 'critical'), win('d', 91.5, 'warning'), win('plain', 93, 'ok')]);
  assert.deepEqual(alerts, [
    { window: 0, state: 'critical', value: 95, message: 'cpu,host=a max 95' },
    { window: 3, state: 'critical', value: 91.5, message: 'cpu,host=d max 91.5' },
    { window: 4, state: 'critical', value: 93, message: 'a plain record' },
  ]);
  assert.deepEqual(above90([]), []);
});

test('an evaluateBatch override names the windows itself; a bad window or state fails the batch', () => {
  testing.stubHost();
  class Last extends Alert {
    evaluateBatch(windows) {
      // One alert for the batch, from its hottest window.
      let hot = windows[0];
      for (const w of windows) if (w.aggregate('max') > hot.aggregate('max')) hot = w;
      return [
        hot.alert('warning', hot.aggregate('max'), 'hottest'),
        new AlertEvent({ window: 0, state: 'ok', value: 1, message: 'first' }),
        new AlertEvent('critical', 2, 'by position', windows[1]),
      ];
    }
  }
  assert.deepEqual(exportAlert(Last)([win('a', 1, 'ok'), win('b', 7, 'ok'), win('c', 3, 'ok')]), [
    { window: 1, state: 'warning', value: 7, message: 'hottest' },
    { window: 0, state: 'ok', value: 1, message: 'first' },
    { window: 1, state: 'critical', value: 2, message: 'by position' },
  ]);
  class Bad extends Alert {
    evaluateBatch(windows) {
      return [{ window: windows.length, state: 'ok', value: 0, message: 'past the end' }];
    }
  }
  assert.throws(() => exportAlert(Bad)([win('a', 1, 'ok')]), {
    name: 'PluginError',
    message: 'alert 0 names window 1: an alert names the window that caused it by its index in the list given (1 windows)',
    index: null,
  });
  class NoWindow extends Alert {
    evaluateBatch() {
      return [{ state: 'ok', value: 0, message: 'which window?' }];
    }
  }
  assert.throws(() => exportAlert(NoWindow)([win('a', 1, 'ok')]), /alert 0 names window undefined/);
  class BadState extends Alert {
    evaluate(w) {
      return w.alert('firing', 1, 'no such state');
    }
  }
  assert.throws(() => exportAlert(BadState)([win('a', 1, 'ok'), win('b', 1, 'ok')]), {
    message: 'alert 0: state `firing` is not ok, warning or critical',
    index: 0,
  });
});

test('an error thrown by evaluate names its window', () => {
  testing.stubHost();
  class Boom extends Alert {
    evaluate(w) {
      if (w.tag('host') === 'b') throw new RangeError('too hot');
      return null;
    }
  }
  assert.throws(() => exportAlert(Boom)([win('a', 1, 'ok'), win('b', 1, 'ok')]), { message: 'RangeError: too hot', index: 1 });
});

test('windows read as the host sends them', () => {
  testing.stubHost();
  let seen;
  class Look extends Alert {
    evaluate(w) {
      seen = w;
      return null;
    }
  }
  exportAlert(Look)([win('x', 1, 'ok'), testing.window({ windowStart: 60_000_000_000, windowEnd: 120_000_000_000, aggregates: { p99: 2.5 }, state: 'warning' })]);
  assert.equal(seen.index, 1);
  assert.equal(seen.windowStart, 60_000_000_000n);
  assert.equal(seen.windowEnd, 120_000_000_000n);
  assert.equal(seen.aggregate('p99'), 2.5);
  assert.equal(seen.aggregate('max'), undefined);
  assert.equal(seen.state, 'warning');
  assert.equal(seen.rule, 'rule');
});

test('formatFloat writes f64 as Rust Display does', () => {
  const cases = [[85, '85'], [93.2, '93.2'], [-0, '-0'], [0, '0'], [1e21, '1000000000000000000000'], [1e-7, '0.0000001'],
    [1.5e-10, '0.00000000015'], [-2.5e22, '-25000000000000000000000'], [NaN, 'NaN'], [Infinity, 'inf'], [-Infinity, '-inf'],
    [123456.789, '123456.789'], [5e-324, '0.' + '0'.repeat(323) + '5'], [1e22, '1' + '0'.repeat(22)], [1e23, '1' + '0'.repeat(23)],
    [1.7976931348623157e308, '17976931348623157' + '0'.repeat(292)], [0.1 + 0.2, '0.30000000000000004'], [123456789.125, '123456789.125'],
    [2 ** 53 + 2, '9007199254740994'],
    // Ties between two shortest candidates: JavaScript picks the even digit, Rust the one away from zero.
    [245010723912258.125, '245010723912258.13'], [-885696802133.78125, '-885696802133.7813'], [-1680152598027572.25, '-1680152598027572.3'],
    [664754940030335.25, '664754940030335.3']];
  for (const [x, s] of cases) assert.equal(formatFloat(x), s, String(x));
  assert.equal(String(245010723912258.125), '245010723912258.12', "the engine's own choice differs");
});

test('seriesKey escapes backslash, comma and equals', () => {
  assert.equal(seriesKey({ measurement: 'c,p=u\\', tags: [{ key: 'h=o', value: 'a,b' }] }), 'c\\,p\\=u\\\\,h\\=o=a\\,b');
  assert.equal(seriesKey(new Point('cpu').withTag('b', '2').withTag('a', '1').series()), 'cpu,a=1,b=2');
});
