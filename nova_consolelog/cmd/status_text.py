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

"""``nova-consolelog status`` as text: one block per instance.

``status.collect`` gathers the state as plain data (``--json`` prints
that); this module turns it into the lines an operator reads.
"""


def format_size(n):
    """``n`` bytes for humans: 512 B, 2.0 MiB."""
    if n < 1024:
        return '%d B' % n
    for unit in ('KiB', 'MiB', 'GiB'):
        n /= 1024.0
        if n < 1024 or unit == 'GiB':
            return '%.1f %s' % (n, unit)


def age(seconds):
    seconds = max(0, int(seconds))
    if seconds < 120:
        return '%ds' % seconds
    if seconds < 7200:
        return '%dm' % (seconds // 60)
    if seconds < 172800:
        return '%dh' % (seconds // 3600)
    return '%dd' % (seconds // 86400)


def format_text(state):
    """The state as text lines, one block per instance."""
    out = ['instances path: %s' % state['instances_path'],
           'stash path:     %s' % state['stash_path']]
    if not state['instances']:
        out.append('no console-log state on this host')
    for uuid in sorted(state['instances']):
        e = state['instances'][uuid]
        out.append('')
        out.append('instance %s' % uuid)
        if e['chain']:
            out.append('  history: %d file(s), %s; virtlogd files: %d, %s' % (
                e['history_files'], format_size(e['history_bytes']),
                e['log_files'], format_size(e['log_bytes'])))
            for f in e['chain']:
                out.append('    %-24s %-8s %s' % (f['name'], f['kind'],
                                                  format_size(f['size'])))
        for h in e['handovers']:
            out.append('  hand-over recorded by %s: %s, peer %s, state %s, '
                       '%s old' % (h['recorded_by'], h.get('role'),
                                   h.get('peer'), h.get('state'),
                                   age(h['age'])))
            out.append('    why: %s' % h['why'])
        for s in e['stashes']:
            out.append('  stash %s: %d file(s), %s, %s old, %s%s%s' % (
                s['stash_id'], s['files'], format_size(s['bytes']),
                age(s['age']), s['state'],
                ', for %s' % s['destination'] if s.get('destination')
                else '',
                ' (expired: deleted by the next periodic run)'
                if s['expired'] else ''))
        for p in e.get('pins', ()):
            out.append('  pin %s (a pull by hand), %s old: released by the '
                       'pull, or removed after twice pull_timeout' % (
                           p['stash_id'], age(p['age'])))
        for p in e['partial_imports']:
            total = ('of %s' % format_size(p['total_bytes'])
                     if p['total_bytes'] is not None else '')
            out.append('  partial import %s: %s written %s, %s old, %s' % (
                p['import_id'], format_size(p['verified_bytes']), total,
                age(p['age']),
                'a pull is running' if p.get('held') else
                'resumed by the next pull of that source; removed when '
                'untouched for stash_expiry'))
        for err in e['errors']:
            out.append('  ERROR: %s' % err)
    return out
