// Native tests of app.js: `node --test` in the project directory.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from './sdk/sluice-sdk.js';
import { evaluate } from './app.js';

afterEach(() => testing.reset());

// A window as the host sends it.
const win = (max, state) =>
  testing.window({ rule: 'hot', measurement: 'cpu', tags: { host: 'a' }, field: 'usage', aggregates: { mean: 1, max }, state });

test('fires above the limit, resolves below it, only on a change of state', () => {
  testing.stubHost({ params: { above: '90' } });
  assert.deepEqual(evaluate([win(50, 'ok'), win(95, 'critical')]), []);
  // An alert names the window that caused it by its index in the list; the host adds the
  // window's rule, series, field and bounds.
  assert.deepEqual(evaluate([win(50, 'ok'), win(95, 'ok')]), [
    { window: 1, state: 'critical', value: 95, message: 'cpu usage max is 95 (limit 90) host=a' },
  ]);
  assert.deepEqual(evaluate([win(12.5, 'critical')]), [
    { window: 0, state: 'ok', value: 12.5, message: 'cpu usage max back to 12.5 (limit 90) host=a' },
  ]);
});

test('needs its parameter', () => {
  testing.stubHost();
  assert.throws(() => evaluate([win(1, 'ok')]), { message: 'set parameter `above`', index: null });
});
