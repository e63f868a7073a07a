# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Run the benchmarks: ``python -m tests.bench [--runs N] [NAME ...]``.

Each benchmark is a module ``bench_<name>`` in this package with a ``run()``
function that prints its results. Results are ratios against a baseline
measured in the same run, never absolute pass/fail thresholds. Without
names all run, in ``ORDER`` and then any other by name.

``--runs N`` (or ``BENCH_RUNS=N``) runs the whole selection N times, one
run after the other, and then prints every row of the benchmarks whose
``run()`` returns its rows (``bench_transfer.Goals``) as the median and
range of its N runs: one run of a 2-vCPU host proves nothing.
"""

import argparse
import importlib
import os
import pkgutil
import sys

import tests.bench as bench_pkg
from tests.bench import bench_transfer

# The host drain runs after the single-pull rows it builds on.
ORDER = ('chain', 'transfer', 'drain')


def main(argv):
    names = sorted((m.name[len('bench_'):]
                    for m in pkgutil.iter_modules(bench_pkg.__path__)
                    if m.name.startswith('bench_')),
                   key=lambda n: (ORDER.index(n) if n in ORDER
                                  else len(ORDER), n))
    parser = argparse.ArgumentParser(prog='python -m tests.bench')
    parser.add_argument('--runs', type=int,
                        default=int(os.environ.get('BENCH_RUNS') or 1),
                        help='run everything N times and print each row '
                        'as the median and range of the N runs')
    parser.add_argument('names', nargs='*', metavar='NAME')
    args = parser.parse_args(argv)
    wanted = args.names or names
    unknown = set(wanted) - set(names)
    if unknown or args.runs < 1:
        print('unknown benchmark(s): %s; known: %s' % (
            ', '.join(sorted(unknown)), ', '.join(names)) if unknown else
            '--runs must be 1 or more', file=sys.stderr)
        return 2
    rows = {name: [] for name in wanted}
    for run in range(args.runs):
        for name in wanted:
            if args.runs > 1:
                print('== %s (run %d of %d) ==' % (name, run + 1, args.runs),
                      flush=True)
            else:
                print('== %s ==' % name, flush=True)
            module = importlib.import_module(
                'tests.bench.bench_' + name)
            result = module.run()
            if result:
                rows[name].append(result)
    if args.runs > 1:
        for name in wanted:
            if rows[name]:
                print('\n== %s: %d runs ==' % (name, len(rows[name])))
                bench_transfer.summarize(rows[name])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
