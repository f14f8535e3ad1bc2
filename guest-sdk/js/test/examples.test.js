// The example plugins of this repository (plugins/*-js) against the unit tests of their Rust
// twins (node --test guest-sdk/js/test/).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Batch, Point, testing } from '../sluice-sdk.js';
import { evaluate } from '../../../plugins/threshold-alert-js/app.js';
import { filter as dropFilter, glob } from '../../../plugins/drop-filter-js/app.js';
import { filter as benchFilter } from '../../../plugins/bench-filter-js/app.js';

afterEach(() => testing.reset());

test('threshold-alert-js fires, escalates and resolves with hysteresis, as plugins/threshold-alert', () => {
  testing.stubHost({ params: { warn_above: '80', crit_above: '90', hysteresis: '5' } });
  let state = 'ok';
  const changes = [];
  for (const value of [50, 85, 78, 93.2, 87, 77, 74, 70]) {
    const w = testing.window({ rule: 'cpu-high', measurement: 'cpu', tags: { host: 'a' }, field: 'usage_user', aggregates: { mean: value }, state });
    const alerts = evaluate([w]);
    for (const a of alerts) {
      assert.equal(a.window, 0);
      state = a.state;
      changes.push([a.value, a.state, a.message]);
    }
  }
  assert.deepEqual(changes, [
    [85, 'warning', 'cpu usage_user mean 85 >= 80 (warning) host=a'],
    [93.2, 'critical', 'cpu usage_user mean 93.2 >= 90 (critical) host=a'],
    [77, 'warning', 'cpu usage_user mean 77 >= 75 (warning) host=a'],
    [74, 'ok', 'cpu usage_user mean 74 < 75 (resolved) host=a'],
  ]);
});

test('threshold-alert-js: alerts name their windows; a window without the aggregate raises nothing', () => {
  testing.stubHost({ params: { aggregate: 'p99', crit_above: '1' } });
  const w = (p99, st) => testing.window({ measurement: 'température', tags: { 城市: '東京' }, aggregates: p99 === undefined ? {} : { p99 }, state: st });
  assert.deepEqual(evaluate([w(undefined, 'ok'), w(2, 'ok'), w(3, 'critical'), w(0.5, 'critical')]), [
    { window: 1, state: 'critical', value: 2, message: 'température value p99 2 >= 1 (critical) 城市=東京' },
    { window: 3, state: 'ok', value: 0.5, message: 'température value p99 0.5 < 1 (resolved) 城市=東京' },
  ]);
  testing.stubHost({ params: { hysteresis: '5' } });
  assert.throws(() => evaluate([w(1, 'ok')]), { message: 'set `warn_above`, `crit_above` or both', index: null });
});

test('drop-filter-js globs as plugins/drop-filter, by character', () => {
  const g = (p, t) => glob(Array.from(p), Array.from(t));
  assert.ok(g('swap*', 'swap'));
  assert.ok(g('swap*', 'swapfile'));
  assert.ok(g('*', ''));
  assert.ok(g('test-?', 'test-7'));
  assert.ok(g('a*b*c', 'axxbyyc'));
  assert.ok(g('*é', 'café'));
  assert.ok(g('db-?', 'db-🚀'), 'one ? is one character, not one UTF-16 unit');
  assert.ok(!g('test-?', 'test-'));
  assert.ok(!g('test-?', 'test-77'));
  assert.ok(!g('swap', 'swapfile'));
  assert.ok(!g('a*b', 'ac'));
});

test('drop-filter-js drops matches, or keeps only them when inverted', () => {
  const batch = Batch.fromPoints([
    new Point('cpu', 1n).withTag('host', 'web-1').withField('v', 1),
    new Point('swapfile', 2n).withTag('host', 'web-1').withField('v', 1),
    new Point('cpu', 3n).withTag('host', 'test-7').withField('v', 1),
    new Point('cpu', 4n).withField('v', 1),
  ]);
  testing.stubHost({ params: { measurement: 'swap*', tag: 'host=test-?' } });
  assert.deepEqual(dropFilter(batch), [true, false, false, true]);
  testing.stubHost({ params: { measurement: 'swap*', tag: 'host=test-?', invert: 'true' } });
  assert.deepEqual(dropFilter(batch), [false, true, true, false]);
  testing.stubHost({ params: { tag: '=x' } });
  assert.throws(() => dropFilter(batch), { message: 'parameter `tag`: `=x` is not key=pattern' });
});

test('bench-filter-js keeps a point iff its field `value` is a number >= 0', () => {
  testing.stubHost();
  const batch = Batch.fromPoints([
    new Point('cpu').withField('usage_user', 12.5).withField('value', 1),
    new Point('cpu').withField('usage_user', 12.5).withField('value', -1),
    new Point('cpu').withField('value', 'text'),
    new Point('cpu').withField('other', 1),
    new Point('cpu').withField('value', NaN),
    new Point('cpu').withField('value', 0n),
  ]);
  assert.deepEqual(benchFilter(batch), [true, false, false, false, false, true]);
});
