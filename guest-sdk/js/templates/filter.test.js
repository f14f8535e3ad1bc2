// Native tests of app.js: `node --test` in the project directory.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Batch, Point, integer, unsigned, testing } from './sdk/sluice-sdk.js';
import { filter } from './app.js';

afterEach(() => testing.reset());

const points = [
  new Point('cpu', 1n).withTag('host', 'a').withField('value', 42.5),
  new Point('cpu', 2n).withTag('host', 'b').withField('value', integer(120)),
  new Point('cpu', 3n).withTag('host', 'ç').withField('value', unsigned(7)),
  new Point('cpu', 4n).withField('other', 1e9),
  new Point('cpu', 5n).withField('value', 'text'),
];

test('keeps values up to 100 by default, and points without a numeric value', () => {
  testing.stubHost();
  assert.deepEqual(filter(Batch.fromPoints(points)), [true, false, true, true, true]);
});

test('max and field come from parameters', () => {
  testing.stubHost({ params: { max: '10', field: 'value' } });
  assert.deepEqual(filter(Batch.fromPoints(points)), [false, false, true, true, true]);
});

test('a bad parameter fails the whole batch, naming it', () => {
  testing.stubHost({ params: { max: 'lots' } });
  assert.throws(() => filter(Batch.fromPoints(points)), {
    message: 'parameter `max` = `lots`: invalid float literal',
    index: null,
  });
});
