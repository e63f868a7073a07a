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

"""Run the benchmarks: ``python -m tests.bench [NAME ...]``.

Each benchmark is a module ``bench_<name>`` in this package with a ``run()``
function that prints its results. Results are ratios against a baseline
measured in the same run, never absolute pass/fail thresholds. Without
names all run, in ``ORDER`` and then any other by name.
"""

import importlib
import pkgutil
import sys

import tests.bench as bench_pkg

# The host drain runs after the single-pull rows it builds on.
ORDER = ('chain', 'transfer', 'drain')


def main(argv):
    names = sorted((m.name[len('bench_'):]
                    for m in pkgutil.iter_modules(bench_pkg.__path__)
                    if m.name.startswith('bench_')),
                   key=lambda n: (ORDER.index(n) if n in ORDER
                                  else len(ORDER), n))
    wanted = argv or names
    unknown = set(wanted) - set(names)
    if unknown:
        print('unknown benchmark(s): %s; known: %s' % (
            ', '.join(sorted(unknown)), ', '.join(names)), file=sys.stderr)
        return 2
    for name in wanted:
        print('== %s ==' % name, flush=True)
        module = importlib.import_module(
            'tests.bench.bench_' + name)
        module.run()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
