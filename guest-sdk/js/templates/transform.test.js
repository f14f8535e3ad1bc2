// Native tests of app.js: `node --test` in the project directory.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Batch, Point, integer, testing } from './sdk/sluice-sdk.js';
import { transform } from './app.js';

afterEach(() => testing.reset());

test('converts temp_f to temp_c and keeps the other fields and tags', () => {
  const h = testing.stubHost();
  const out = transform(Batch.fromPoints([
    new Point('weather', 1_700_000_000_123_456_789n).withTag('host', 'a').withField('temp_f', 212).withField('n', integer(3)),
    new Point('weather', 1_700_000_000_000_000_000n).withField('humidity', 40),
  ]));
  // The export returns a batch, as the host reads it; testing.points() reads it back.
  assert.deepEqual(testing.points(out), [
    new Point('weather', 1_700_000_000_123_456_789n).withTag('host', 'a').withField('n', integer(3)).withField('temp_c', 100),
    new Point('weather', 1_700_000_000_000_000_000n).withField('humidity', 40),
  ]);
  assert.deepEqual(h.logs, [{ level: 'debug', message: 'converted', fields: { points: '1', of: '2' } }]);
});

test('tags points with their data center from the lookup table', () => {
  testing.stubHost({ params: { table: 'hosts' }, lookup: { hosts: { 'web-1': { dc: 'zürich' } } } });
  const out = testing.points(transform(Batch.fromPoints([
    new Point('cpu', 1n).withTag('host', 'web-1').withField('usage', 5),
    new Point('cpu', 2n).withTag('host', 'web-2').withField('usage', 6),
  ])));
  assert.deepEqual(out[0].tags, [{ key: 'dc', value: 'zürich' }, { key: 'host', value: 'web-1' }]);
  assert.deepEqual(out[1].tags, [{ key: 'host', value: 'web-2' }]);
});
