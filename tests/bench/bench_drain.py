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

"""A host drain (issue 13): one host evacuated by live migration.

One ``nova-consolelog serve`` process is the drained host: it holds the
stashes of ``INSTANCES`` instances, each an 8 MiB chain (virtlogd's
default: 4 files of 2 MiB, random bytes, so nothing compresses), every
stash handed to one of ``DESTINATIONS`` destination hosts. Each
destination is a process of its own that pulls its instances as a
destination nova-compute would: one ``transfer.pull`` per instance, all of
them at once, each in a thread, with one RPC client. All of it runs
through the one local RabbitMQ, with the defaults on both ends.

Printed, per round and as goal rows:

* total time of the drain (first pull started to last pull returned,
  release included), against raw kombu moving the same bytes with the
  same settings and concurrency (information: the pulls also open their
  transfers, verify every block and install, and no goal is set for it);
* the broker's memory peak: RabbitMQ's own figure is its RSS
  (``vm_memory_calculation_strategy = rss``), sampled every
  ``SAMPLE_INTERVAL``; raw kombu's peak is printed next to it;
* each destination's peak RSS growth over the whole run (all its
  imports, every round), goal <= 64 MiB "however many imports it
  receives": so also of a fresh destination process that receives all
  ``INSTANCES`` at once (the whole host drained onto one);
* p99 of a small oslo.messaging call on the same broker (bench_transfer's
  probe) during the drain vs idle, goal <= 2x; its p99 while raw kombu
  moves the same bytes is printed next to it;
* bytes verified: after each round every installed history is read back
  and compared with the source's bytes, and no stash may be left on the
  source. A pull that fails, a byte that differs or a stash left behind
  stops the bench with the instance named.

Raw kombu (the baseline): ``DESTINATIONS`` consumer processes with
``INSTANCES / DESTINATIONS`` threads each, one connection and one
exclusive, auto-delete, non-durable queue per thread, the pull's
prefetch, acking each message; one publisher process with as many
connections as a source's bulk publisher pool (4), transient messages of
``chunk_size`` bytes, no confirms. Its connections and queues are made
before its timer starts (a pull opens its own inside its time).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import kombu

from nova_consolelog import chain as cl_chain
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer
from nova_consolelog.transfer import bulk_path

from tests.bench import bench_transfer as bt
from tests.bench import helper_process
from tests import fixtures as test_fixtures
from tests.functional import base

MiB = 1024 * 1024
INSTANCES = 40
DESTINATIONS = 4
# A destination that receives every instance of the drained host at once.
ONE_HOST = 'dst-all'
CHAIN_SIZE = 8 * MiB
# Drains (and raw kombu runs, alternating); each destination keeps its
# process across them, so its memory is measured over every import.
ROUNDS = 3
# Connections of raw kombu's publisher: a source's bulk publisher pool.
PUBLISHERS = 4
RSS_GOAL_MIB = 64
P99_GOAL = 2.0
IDLE_SECONDS = 3.0
# The probe measures in short windows while a drain runs; only windows
# that ended before the drain did count.
PROBE_WINDOW = 0.25
SAMPLE_INTERVAL = 0.01


class Proc(helper_process.HelperProcess):
    """A helper process of this module, one JSON line per reply."""

    MODULE = 'bench_drain'

    def ready(self):
        self.reply()

    def send(self, *cmd):
        self.write_line(json.dumps(cmd))

    def reply(self):
        answer = json.loads(self.read_line())
        if 'error' in answer:
            raise RuntimeError('bench helper %d: %s' % (self.proc.pid,
                                                        answer['error']))
        return answer

    def ask(self, *cmd):
        self.send(*cmd)
        return self.reply()


def _serve(handlers):
    """Answer JSON commands on stdin with ``handlers[cmd](*args)``."""
    print(json.dumps({'ready': os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            answer = handlers[cmd[0]](*cmd[1:])
        except Exception as e:
            answer = {'error': '%s: %s' % (type(e).__name__, e)}
        print(json.dumps(answer), flush=True)


# -- a destination host ------------------------------------------------------


def _overrides():
    """``[consolelog]`` options of the destinations from the environment.

    ``BENCH_DRAIN_OPTS='bulk_rate_limit=10000000,max_concurrent_imports=4'``
    runs the drain with other settings than the defaults.
    """
    found = {}
    for item in os.environ.get('BENCH_DRAIN_OPTS', '').split(','):
        if item.strip():
            name, _, value = item.partition('=')
            found[name.strip()] = int(value)
    return found


def destination_main(root, topic, host):
    """A destination nova-compute: pulls its instances concurrently."""
    conf, rpcapi = bt.puller(root, topic, host=host, **_overrides())

    def warm(instance, stash_id):
        # The client's connections and reply queue exist before the
        # baseline, as in a nova-compute that has been running a while.
        rpcapi.describe({}, 'src', instance, stash_id=stash_id)
        return {}

    def drain(jobs):
        results = {}

        def pull(instance, stash_id):
            try:
                chain = cl_chain.ConsoleLogChain.for_instance(instance,
                                                              conf=conf)
                os.makedirs(chain.directory, exist_ok=True)
                r = transfer.pull(conf, rpcapi, 'src', instance,
                                  stash_id=stash_id, chain=chain,
                                  local_host=host)
                results[instance] = {
                    'bytes': r.bytes, 'released': r.released,
                    'bulk_bytes': r.bulk_bytes, 'seconds': r.seconds}
            except Exception as e:
                results[instance] = {'error': '%s: %s' % (
                    type(e).__name__, e)}
        threads = [threading.Thread(target=pull, args=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {'pulls': results}

    try:
        _serve({'warm': warm, 'drain': drain})
    finally:
        rpcapi.transport.cleanup()


# -- raw kombu ---------------------------------------------------------------


def sink_main(url, prefetch):
    """Raw kombu consumers: one connection and queue per thread."""
    sinks = []

    def open_(count):
        for conn, _ in sinks:
            conn.release()
        sinks[:] = []
        for _ in range(count):
            conn = kombu.Connection(url)
            conn.ensure_connection(max_retries=1)
            name = 'consolelog-bench-%s' % uuid.uuid4().hex
            channel = conn.channel()
            queue = kombu.Queue(name, exchange='', routing_key=name,
                                exclusive=True, auto_delete=True,
                                durable=False, channel=channel)
            queue.declare()
            sinks.append((conn, [queue, channel, name, 0]))
        return {'queues': [s[2] for _, s in sinks]}

    def drain(size):
        errors = []

        def consume(conn, state):
            queue, channel = state[0], state[1]

            def on_message(body, message):
                state[3] += len(message.body)
                message.ack()
            try:
                consumer = kombu.Consumer(
                    channel, queues=[queue], callbacks=[on_message],
                    accept=None, prefetch_count=prefetch, auto_declare=False)
                consumer.consume()
                while state[3] < size:
                    conn.drain_events(timeout=60)
                consumer.cancel()
                queue.delete()
            except Exception as e:
                errors.append('%s: %s' % (type(e).__name__, e))
        threads = [threading.Thread(target=consume, args=s) for s in sinks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            return {'error': errors[0]}
        return {'bytes': sum(s[3] for _, s in sinks)}

    try:
        _serve({'open': open_, 'drain': drain})
    finally:
        for conn, _ in sinks:
            conn.release()


def source_main(url, connections, chunk, count):
    """Raw kombu publisher: ``connections`` threads share the queues."""
    body = os.urandom(chunk)
    conns = []
    for _ in range(connections):
        conn = kombu.Connection(url)
        conn.ensure_connection(max_retries=1)
        conns.append(conn)

    def publish(queues):
        pending = list(queues)
        lock = threading.Lock()

        def run(conn):
            producer = kombu.Producer(conn.default_channel,
                                      exchange=kombu.Exchange(''),
                                      auto_declare=False)
            while True:
                with lock:
                    if not pending:
                        return
                    queue = pending.pop(0)
                for _ in range(count):
                    producer.publish(body, routing_key=queue, delivery_mode=1,
                                     content_type=bt.CONTENT_TYPE,
                                     content_encoding='binary', retry=False)
        threads = [threading.Thread(target=run, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {}

    try:
        _serve({'publish': publish})
    finally:
        for conn in conns:
            conn.release()


# -- measuring ---------------------------------------------------------------


def _rss_kib(pid, field='VmRSS'):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """Peak RSS of some processes, sampled from here while running."""

    def __init__(self, pids):
        self.pids = dict(pids)
        self.peaks = {k: 0 for k in self.pids}
        self._stop = threading.Event()
        self._thread = None

    def _loop(self):
        while True:
            for k, pid in self.pids.items():
                self.peaks[k] = max(self.peaks[k], _rss_kib(pid))
            if self._stop.wait(SAMPLE_INTERVAL):
                return

    def __enter__(self):
        self.peaks = {k: _rss_kib(p) for k, p in self.pids.items()}
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class ProbeWindows:
    """The probe's latencies while something runs, in short windows."""

    def __init__(self, probe):
        self.probe = probe
        self.windows = []
        self.error = None
        self._stop = threading.Event()
        self._thread = None

    def _loop(self):
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                latencies = [float(x) for x in self.probe.ask(
                    'measure %f %f' % (PROBE_WINDOW, bt.P99_INTERVAL))]
                self.windows.append((started, time.monotonic(), latencies))
        except Exception as e:
            self.error = e

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop)
        self._thread.start()
        # Let the first window start before what it measures.
        time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.ended = time.monotonic()
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError('probe failed: %s' % self.error)

    def latencies(self):
        inside = [w for w in self.windows if w[1] <= self.ended]
        return [x for w in (inside or self.windows[:1]) for x in w[2]]


def _seed(round_no, i):
    return 1000 * round_no + i


def _stash_all(src, round_no, hosts):
    """The drained host's stashes; ``{host: [(instance, stash_id)]}``."""
    jobs = {h: [] for h in hosts}
    for i in range(INSTANCES):
        host = hosts[i % len(hosts)]
        instance = str(uuid.uuid4())
        files = bt.chain_files(CHAIN_SIZE, 'random', _seed(round_no, i))
        directory = test_fixtures.write_chain(src.conf, instance, files)
        stash = cl_stash.Stash.create(
            instance, cl_chain.ConsoleLogChain(directory, conf=src.conf),
            root=src.conf.consolelog.stash_path, conf=src.conf,
            destination=host)
        jobs[host].append((instance, stash.stash_id, i))
    return jobs


def _verify(root, topic, src, round_no, jobs, replies):
    """Bytes installed and identical to the source's, every instance."""
    verified = 0
    for host, host_jobs in jobs.items():
        conf = test_fixtures.make_conf(root, host, topic)
        for instance, stash_id, i in host_jobs:
            got = replies[host]['pulls'].get(instance, {'error': 'no reply'})
            if 'error' in got:
                raise RuntimeError('drain: pull of %s by %s failed: %s' % (
                    instance, host, got['error']))
            if got['bytes'] != CHAIN_SIZE or not got['released']:
                raise RuntimeError('drain: pull of %s by %s: %s' % (
                    instance, host, got))
            expected = test_fixtures.chain_bytes(bt.chain_files(
                CHAIN_SIZE, 'random', _seed(round_no, i)))
            chain = cl_chain.ConsoleLogChain.for_instance(instance,
                                                          conf=conf)
            history = chain.history()
            if len(history) != 1:
                raise RuntimeError('drain: %s on %s has %d history files, '
                                   'not 1' % (instance, host, len(history)))
            with open(os.path.join(chain.directory, history[0].name),
                      'rb') as f:
                if f.read() != expected:
                    raise RuntimeError('drain: %s on %s: installed bytes '
                                       'differ from the source' % (
                                           instance, host))
            verified += len(expected)
            # Free the disk for the next round.
            shutil.rmtree(chain.directory)
    left = os.listdir(src.conf.consolelog.stash_path)
    if left:
        raise RuntimeError('drain: %d stash(es) left on the source: %s' % (
            len(left), left[:3]))
    return verified


def run():
    problem = base.ensure_rabbitmq()
    if problem:
        print('cannot run: %s' % problem)
        return
    root = tempfile.mkdtemp(prefix='consolelog-drain-')
    topic = 'consolelog-drain-%s' % uuid.uuid4().hex
    hosts = ['dst%d' % n for n in range(DESTINATIONS)]
    procs = []
    src = base.HostProcess(root, 'src', topic, overrides={
        'chunk_size': MiB, 'bulk_window': 8 * MiB})
    try:
        src.start()
        probe = bt.Child('probe_main', root, base.TRANSPORT_URL,
                         topic + '-probe')
        procs.append(probe)
        dests = {}
        for h in hosts:
            dests[h] = Proc('destination_main', root, topic, h)
            procs.append(dests[h])
        sinks = []
        for _ in hosts:
            sinks.append(Proc('sink_main', bt.KOMBU_URL,
                              bulk_path.BULK_PREFETCH))
            procs.append(sinks[-1])
        pub = Proc('source_main', bt.KOMBU_URL, PUBLISHERS, MiB,
                   CHAIN_SIZE // MiB)
        procs.append(pub)
        return _run(root, topic, src, probe, dests, sinks, pub)
    finally:
        for proc in procs:
            proc.close()
        src.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run(root, topic, src, probe, dests, sinks, pub):
    started = time.monotonic()
    total = INSTANCES * CHAIN_SIZE
    per_host = INSTANCES // len(dests)
    broker = bt._broker_pid()
    print('drain: %d instances x %d MiB chains (4 files, random bytes) from '
          'one source process to %d destination processes, %d concurrent '
          'pulls each; chunk_size 1 MiB, bulk_window 8 MiB, %d rounds; '
          'destination options: %s' % (
              INSTANCES, CHAIN_SIZE // MiB, len(dests), per_host, ROUNDS,
              _overrides() or 'defaults'), flush=True)
    goals = bt.Goals()
    hosts = sorted(dests)
    base_rss = None
    drain_times, kombu_times = [], []
    broker_peaks, kombu_broker_peaks = [], []
    p99s = {'idle': [], 'drain': [], 'kombu': []}
    p50s = {'idle': [], 'drain': []}
    dest_peaks = {h: 0 for h in hosts}
    sink_growth = []
    verified = 0
    for round_no in range(ROUNDS):
        jobs = _stash_all(src, round_no, hosts)
        if base_rss is None:
            for h in hosts:
                dests[h].ask('warm', *jobs[h][0][:2])
            base_rss = {h: _rss_kib(dests[h].pid) for h in hosts}
            hwm0 = {h: _rss_kib(dests[h].pid, 'VmHWM') for h in hosts}

        # Idle probe.
        latencies = [float(x) for x in probe.ask(
            'measure %f %f' % (IDLE_SECONDS, bt.P99_INTERVAL))]
        p99s['idle'].append(bt.p99(latencies))
        p50s['idle'].append(bt.median(latencies))

        # Raw kombu, the same bytes and concurrency.
        queues = [s.ask('open', per_host)['queues'] for s in sinks]
        pids = {'broker': broker}
        pids.update(('sink%d' % n, s.pid) for n, s in enumerate(sinks))
        before = {k: _rss_kib(p) for k, p in pids.items()}
        with Sampler(pids) as sampler, ProbeWindows(probe) as windows:
            t0 = time.perf_counter()
            for s in sinks:
                s.send('drain', CHAIN_SIZE)
            pub.ask('publish', [q for qs in queues for q in qs])
            moved = sum(s.reply()['bytes'] for s in sinks)
            kombu_times.append(time.perf_counter() - t0)
        p99s['kombu'].append(bt.p99(windows.latencies()))
        if moved != total:
            raise RuntimeError('raw kombu moved %d bytes, not %d' % (
                moved, total))
        kombu_broker_peaks.append(sampler.peaks['broker'] / 1024.0)
        sink_growth.append(max(sampler.peaks[k] - before[k]
                               for k in pids if k != 'broker') / 1024.0)

        # The drain, with the probe running.
        pids = {'broker': broker}
        pids.update((h, dests[h].pid) for h in hosts)
        broker_before = _rss_kib(broker) / 1024.0
        with Sampler(pids) as sampler, ProbeWindows(probe) as windows:
            t0 = time.perf_counter()
            for h in hosts:
                dests[h].send('drain', [job[:2] for job in jobs[h]])
            replies = {h: dests[h].reply() for h in hosts}
            drain_times.append(time.perf_counter() - t0)
        latencies = windows.latencies()
        p99s['drain'].append(bt.p99(latencies))
        p50s['drain'].append(bt.median(latencies))
        broker_peaks.append(sampler.peaks['broker'] / 1024.0)
        for h in hosts:
            dest_peaks[h] = max(dest_peaks[h], sampler.peaks[h])
        bulk = sum(p.get('bulk_bytes') or 0 for r in replies.values()
                   for p in r['pulls'].values())
        slowest = max(p.get('seconds') or 0 for r in replies.values()
                      for p in r['pulls'].values())
        after = {h: _rss_kib(dests[h].pid) for h in hosts}
        verified += _verify(root, topic, src, round_no, jobs, replies)
        print('round %d: drain %.2f s (%.0f MB/s, slowest pull %.2f s, '
              '%.0f%% over the bulk channel), raw kombu %.2f s; broker RSS '
              '%.0f -> peak %.0f MiB (raw kombu peak %.0f MiB); destination '
              'RSS growth so far (peak / now), MiB: %s; probe p99 %.2f ms '
              '(%d calls) vs idle %.2f ms' % (
                  round_no + 1, drain_times[-1],
                  total / drain_times[-1] / 1e6, slowest,
                  100.0 * bulk / total, kombu_times[-1], broker_before,
                  broker_peaks[-1], kombu_broker_peaks[-1],
                  ', '.join('%s +%.1f / +%.1f' % (
                      h, (dest_peaks[h] - base_rss[h]) / 1024.0,
                      (after[h] - base_rss[h]) / 1024.0) for h in hosts),
                  p99s['drain'][-1], len(latencies), p99s['idle'][-1]),
              flush=True)

    # However many imports a destination receives: all of them at once.
    one = Proc('destination_main', root, topic, ONE_HOST)
    try:
        jobs = _stash_all(src, ROUNDS, [ONE_HOST])
        one.ask('warm', *jobs[ONE_HOST][0][:2])
        one_base = _rss_kib(one.pid)
        with Sampler({ONE_HOST: one.pid}) as sampler:
            t0 = time.perf_counter()
            replies = {ONE_HOST: one.ask('drain', [
                job[:2] for job in jobs[ONE_HOST]])}
            one_time = time.perf_counter() - t0
        verified += _verify(root, topic, src, ROUNDS, jobs, replies)
        one_growth = (sampler.peaks[ONE_HOST] - one_base) / 1024.0
        print('all %d instances to one destination: %.2f s, RSS growth '
              '+%.1f MiB' % (INSTANCES, one_time, one_growth), flush=True)
    finally:
        one.close()

    ours, kombu_s = bt.median(drain_times), bt.median(kombu_times)
    print('info: drain total time %.2f s (%s) vs raw kombu %.2f s (%s), '
          '%.2fx (median of %d; no goal: the pulls also open, verify, '
          'install and release, and raw kombu connects before its timer)' % (
              ours, bt.spread(drain_times, '%.2f'), kombu_s,
              bt.spread(kombu_times, '%.2f'), ours / kombu_s, ROUNDS))
    print('info: broker RSS peak (RabbitMQ counts its RSS) during the drain '
          '%.0f MiB (%s) vs raw kombu %.0f MiB (%s); memory high watermark '
          '%s' % (max(broker_peaks), bt.spread(broker_peaks),
                  max(kombu_broker_peaks), bt.spread(kombu_broker_peaks),
                  _watermark()))
    print('info: raw kombu consumer process (%d queues) peak RSS growth '
          '+%.1f MiB (largest of %d rounds)' % (
              per_host, max(sink_growth), ROUNDS), flush=True)
    for h in hosts:
        growth = (dest_peaks[h] - base_rss[h]) / 1024.0
        hwm = (_rss_kib(dests[h].pid, 'VmHWM') - max(hwm0[h], base_rss[h])
               ) / 1024.0
        goals.add('drain: %s RSS growth, %d imports' % (h, ROUNDS * per_host),
                  '+%.1f MiB' % growth, '%d MiB (absolute)' % RSS_GOAL_MIB,
                  growth / RSS_GOAL_MIB, ('<=', 1.0),
                  'RSS before %.1f MiB, %d concurrent pulls, VmHWM +%.1f '
                  'MiB' % (base_rss[h] / 1024.0, per_host, max(hwm, 0)))
    goals.add('drain: %s RSS growth, %d at once' % (
        ONE_HOST, INSTANCES), '+%.1f MiB' % one_growth,
        '%d MiB (absolute)' % RSS_GOAL_MIB, one_growth / RSS_GOAL_MIB,
        ('<=', 1.0), 'RSS before %.1f MiB, all %d pulls at once' % (
            one_base / 1024.0, INSTANCES))
    idle, during = bt.median(p99s['idle']), bt.median(p99s['drain'])
    goals.add('drain: p99 small RPC call / idle',
              '%.2f ms (%s)' % (during, bt.spread(p99s['drain'], '%.2f')),
              '%.2f ms (%s)' % (idle, bt.spread(p99s['idle'], '%.2f')),
              during / idle, ('<=', P99_GOAL),
              'median of %d rounds; p50 %.2f vs %.2f ms; p99 while raw '
              'kombu moves the same bytes %.2f ms' % (
                  ROUNDS, bt.median(p50s['drain']),
                  bt.median(p50s['idle']), bt.median(p99s['kombu'])))
    expected = (ROUNDS + 1) * total
    goals.add('drain: bytes verified / bytes expected',
              '%d' % verified, '%d' % expected, verified / expected,
              ('>=', 1.0), 'every installed history read back and compared '
              'with the source; no stash left on the source')
    goals.table()
    print('bench_drain took %.0f s' % (time.monotonic() - started))
    return goals.rows


def _watermark():
    try:
        out = subprocess.run(['rabbitmqctl', 'status', '--formatter', 'json'],
                             capture_output=True, text=True, timeout=30)
        status = json.loads(out.stdout)
        return '%.0f MiB, alarms %s' % (
            status['vm_memory_high_watermark_limit'] / MiB,
            status.get('alarms') or 'none')
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        return 'unknown (%s)' % e
