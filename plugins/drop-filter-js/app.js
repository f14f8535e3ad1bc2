// Drops points by measurement or tag pattern: the twin of plugins/drop-filter.
//
// Parameters:
// - `measurement`: comma-separated glob patterns (`*`, `?`) of measurements to drop;
// - `tag`: comma-separated `key=glob` patterns; a point with a matching tag is dropped;
// - `invert`: `true` keeps only the matching points instead.
//
// Without patterns every point is kept. `?` matches one character (a code point, not a
// UTF-16 unit), as in the Rust plugin.
import { Filter, PluginError, exportFilter, params } from '../../guest-sdk/js/sluice-sdk.js';

export class DropFilter extends Filter {
  constructor() {
    super();
    this.tags = params.list('tag').map((spec) => {
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new PluginError(`parameter \`tag\`: \`${spec}\` is not key=pattern`);
      return [spec.slice(0, eq), chars(spec.slice(eq + 1))];
    });
    this.measurements = params.list('measurement').map(chars);
    this.invert = params.getBool('invert', false);
  }

  keep(point) {
    let matches = false;
    if (this.measurements.length > 0) {
      const m = chars(point.measurement);
      matches = this.measurements.some((p) => glob(p, m));
    }
    if (!matches) {
      for (const [k, p] of this.tags) {
        const v = point.tag(k);
        if (v !== undefined && glob(p, chars(v))) {
          matches = true;
          break;
        }
      }
    }
    return matches === this.invert;
  }
}

/** The code points of `s`. */
function chars(s) {
  return Array.from(s);
}

/**
 * Glob match of code point arrays with `*` (any run) and `?` (one character), iterative with
 * backtracking to the last `*`: linear in practice, no recursion.
 */
export function glob(p, t) {
  let pi = 0;
  let ti = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === '?' || p[pi] === t[ti])) {
      pi++;
      ti++;
    } else if (pi < p.length && p[pi] === '*') {
      starP = pi;
      starT = ti;
      pi++;
    } else if (starP >= 0) {
      pi = starP + 1;
      starT++;
      ti = starT;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

export const filter = exportFilter(DropFilter);
