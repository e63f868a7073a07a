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

"""A console log's hand-over, from one QEMU to the next.

A guest's serial console log lives in its instance directory, where
virtlogd writes it and nova deletes it. Whenever the guest moves to another
host, or a new QEMU starts on the same host, the log so far would be lost:
this package hands it over. The story, module by module:

``record``
    what each host knows of an unfinished hand-over: its ``Role``, the
    peer, the ``State`` (``MIGRATING`` → ``STASHED`` on the source;
    ``MIGRATING`` → ``PULLING`` → ``INSTALLED`` on the destination).
``host``
    where one host keeps chains, stashes and records, and its hand-over
    lock; giving a stash back after a rollback.
``live``
    a live migration: the destination moves a shared chain aside before
    its QEMU starts, the source stashes its chain before nova's cleanup,
    the destination imports it, a rollback gives it back.
``catching``
    the rotation catcher's window on a shared instance path.
``importing``
    the destination's import: pulled (or copied from shared storage),
    installed, then released.
``cold``
    cold migration and resize: a stash held until the confirm.
``restarts``
    the same host: history kept at every QEMU start and across a rebuild.
``reading`` and ``peer_parts``
    console reads during a hand-over: every part merged, oldest first.
``periodic``
    retries and clean-ups that bring every hand-over to an end.
``guard``
    the one guard: nothing here ever raises into nova.

``nova_consolelog.migration.ConsoleLogMigration`` puts these together for
one compute host; the nova driver calls it.
"""
