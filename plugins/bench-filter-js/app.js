// The trivial filter of the host benchmark, the twin of plugins/bench-filter: keep a point
// iff it has a field `value` whose numeric value (float, integer or unsigned) is >= 0.
import { Filter, exportFilter } from '../../guest-sdk/js/sluice-sdk.js';

class BenchFilter extends Filter {
  keep(point) {
    // number() is undefined for a missing, boolean or string field; undefined >= 0 and
    // NaN >= 0 are false.
    return point.number('value') >= 0;
  }
}

export const filter = exportFilter(BenchFilter);
