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

"""A small source chain and a test case that imports it as history.

``ImportTestCase`` begins imports of ``SOURCE`` into its chain, pulls them
chunk by chunk as the pull engine does and commits them with an os call
failing at a chosen step. The history-import and evacuation tests build on
it; no tests here.
"""

import hashlib
import logging

import fixtures

from nova_consolelog import exception

from tests import fixtures as test_fixtures

SOURCE = [('console.log.1', b'first file\n'), ('console.log.0', b'second\n'),
          ('console.log', b'third, the live one\n')]
SOURCE_BYTES = b''.join(data for _name, data in SOURCE)
FILES = [(name, len(data)) for name, data in SOURCE]
# Small blocks: every file of SOURCE is several blocks.
BLOCK = 4


def digests_for(files, data=None):
    """The source's hash lists of ``files`` (data from SOURCE)."""
    data = dict(SOURCE, **(data or {}))
    try:
        return {name: (BLOCK, [hashlib.sha256(
            data.get(name, b'\0' * size)[i:i + BLOCK]).hexdigest()
            for i in range(0, size, BLOCK)]) for name, size in files}
    except (TypeError, ValueError):
        return {}


class ImportTestCase(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='nova_consolelog', level=logging.INFO))

    def begin(self, import_id, files, data=None, chain=None, **kwargs):
        chain = chain or self.chain
        return chain.begin_import(import_id, files,
                                  digests_for(files, data), **kwargs)

    def pull(self, imp, chunk=5):
        """What the pull engine does, chunk by chunk.

        Fetch what is wanted, write it, record progress.
        """
        for name, data in SOURCE:
            start, end = imp.wanted(name)
            while start < end:
                piece = data[start:min(end, start + chunk)]
                imp.write(name, start, piece)
                start += len(piece)
                imp.checkpoint(name, start)

    def visible(self):
        """What a reader sees: member names with contents, and the base."""
        return ({f.name: self.chain.read_chunk(f.name, 0, 10 ** 6)[0]
                 for f in self.chain.scan()}, self.chain.base_offset())

    def commit_failing_at(self, step, imp):
        """``imp.commit()`` with the ``step``-th os call failing.

        Returns ``(committed, where)``; ``where`` names the call that
        failed, None when the commit made fewer calls than ``step`` (it
        then must have succeeded: the loop over the steps is done).
        """
        faulty = test_fixtures.FaultyOS(step)
        with test_fixtures.faulty_os(faulty):
            try:
                imp.commit()
                committed = True
            except exception.ConsoleLogError:
                committed = False
        if faulty.failed is None:
            self.assertTrue(committed)
            return committed, None
        return committed, 'step %d (%s)' % (step, faulty.failed)
