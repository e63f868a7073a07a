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

"""Imports abandoned by a crash come to an end in the periodic task.

A destination killed in the middle of a pull (``crashdriver``: SIGKILL,
what a power cut leaves) keeps a staging file and its progress record in
the instance directory. The driver's periodic task
(``ConsoleLogMigration.retry_pending``) removes them once they are older
than ``[consolelog] partial_import_max_age``: not before, and never while
a pull holds the staging file's flock, whatever its age.
"""

import os
import signal
import time

from tests.functional import crashes

HOUR = 3600


class TestPeriodicRemovesAbandonedImports(crashes.CrashTestCase):

    def setup_hosts(self, **dest):
        super().setup_hosts(**dest)
        self.conf.set_override('partial_import_max_age', HOUR,
                               group='consolelog')

    def age(self, seconds):
        """Make the staging files look ``seconds`` old."""
        then = time.time() - seconds
        for name in self.leftovers():
            os.utime(os.path.join(self.chain.directory, name), (then, then))

    def test_crashed_import_removed_after_its_age_only(self):
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'checkpoint')
        left = self.leftovers()
        self.assertEqual(2, len(left), 'no staging file and progress')
        # Younger than the age: kept (a pull may still resume it).
        self.age(HOUR - 60)
        self.mig.retry_pending()
        self.assertEqual(left, self.leftovers())
        # Older: gone; the source's stash and the history untouched.
        self.age(HOUR + 60)
        self.mig.retry_pending()
        self.assertEqual([], self.leftovers())
        self.assertEqual('absent', self.check_after_crash())
        # A later pull starts over and installs the chain once.
        self.retry('pull')
        self.check_done()

    def test_never_while_a_pull_holds_it(self):
        self.setup_hosts()
        first = self.dest.start(self.instance, self.stash_id,
                                pause_at='checkpoint')
        crashes.Destination.wait_line(first, b'paused')
        left = self.leftovers()
        self.assertEqual(2, len(left))
        self.age(10 * HOUR)
        self.mig.retry_pending()
        self.assertEqual(left, self.leftovers())
        first.send_signal(signal.SIGCONT)
        self.assertTrue(self.dest.finish(first)['released'])
        self.check_done()
