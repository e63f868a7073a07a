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

"""A helper process of a benchmark, driven line by line over pipes.

The benchmarks measure peers that are processes of their own (a raw
kombu publisher, a latency probe, destination hosts); each runs one
function of its bench module in ``python -c`` and talks over its stdin
and stdout. What the lines say is the bench module's business
(``bench_transfer.Child``: words, ``bench_drain.Proc``: JSON); starting,
reading and closing are the same and live here.
"""

import subprocess
import sys

from tests.functional import base


class HelperProcess:
    """``tests.bench.<module>.<function>(*args)`` in a process of its own.

    Subclasses name the bench module (``MODULE``) and wait for the
    function's first line in ``ready``.
    """

    MODULE = None

    def __init__(self, function, *args):
        code = ('from tests.bench import %s as '
                'b; b.%s(*%r)' % (self.MODULE, function, args))
        self.proc = subprocess.Popen(
            [sys.executable, '-c', code], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1, cwd=base.REPO)
        self.ready()

    def ready(self):
        raise NotImplementedError

    @property
    def pid(self):
        return self.proc.pid

    def write_line(self, line):
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def read_line(self):
        """The helper's next line; RuntimeError when it has exited."""
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError('bench helper %d exited (%s)' % (
                self.proc.pid, self.proc.poll()))
        return line

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
