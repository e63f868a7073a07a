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

"""Pull throughput and memory, against raw kombu on the same broker.

All on the local RabbitMQ in one run (DESIGN.md fact 6: about 600 MB/s for
raw kombu at 1 MiB messages, about 80 MB/s for one oslo.messaging call at a
time):

* raw kombu, pipelined: N x 1 MiB published to a queue and consumed
  (the ceiling: no RPC, no JSON, no base64);
* naive pull: one ``read_chunk`` call at a time, 1 MiB, uncompressed;
* our pull (``transfer.pull`` with the default window, chunk size and
  compression) of a 64 MiB random-byte chain and of a 64 MiB console-like
  text chain, over the bulk channel (RPC 1.2, the default on RabbitMQ)
  and over chunk calls (RPC 1.1, ``bulk_transfer = False``);
* peak RSS growth of a process pulling a 256 MiB random chain (bulk).

Goals: random >= 0.5x raw kombu, text >= 1.0x raw kombu, RSS growth
<= 32 MiB. Every rate is the median of several runs (``RUNS``), with
their range.

It also prints the CPU cost per MiB of every step a chunk goes through,
and the CPU milliseconds per MiB that the source, the destination and the
broker spent in each measurement. They explain the gaps: an oslo.messaging
reply is base64 text inside JSON inside JSON, encoded and decoded under
the GIL (the chunk path); the bulk channel moves raw bytes like kombu but
also reads, hashes (twice per side: chunk and whole file) and writes them;
and compressing console text (zlib level 1, about 5 ms per MiB) costs the
source more CPU than the broker and the sockets save. On a 2-vCPU host
shared by both ends and the broker, CPU per MiB, not the window, sets the
rate.
"""

import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import kombu
from oslo_serialization import jsonutils

from nova_consolelog import chain as cl_chain
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import transport as cl_transport
from nova_consolelog.tests.functional import base
from nova_consolelog.tests.unit import test_rpc
from nova_consolelog import transfer

MiB = 1024 * 1024
SIZE = 64 * MiB
RSS_SIZE = 256 * MiB
KOMBU_URL = 'amqp://guest:guest@127.0.0.1:5672//'
# Runs of each measurement; rates are their median. On a 2-vCPU host the
# broker's and our own speed swing by up to 2x from run to run (raw kombu
# has been seen at 430-880 MB/s in one minute): one run proves nothing,
# and the best of a few flatters whichever side had the lucky run.
RUNS = 5


def raw_kombu(total=SIZE, size=MiB):
    """MB/s of N x size messages published and consumed, pipelined."""
    body = os.urandom(size)
    count = total // size
    name = 'consolelog-bench-%s' % uuid.uuid4().hex
    with kombu.Connection(KOMBU_URL) as conn:
        queue = kombu.Queue(name, exchange=kombu.Exchange(name),
                            routing_key=name, auto_delete=True)
        queue(conn.channel()).declare()
        received = []
        done = threading.Event()

        def on_message(body_, message):
            received.append(len(message.body))
            message.ack()
            if len(received) == count:
                done.set()

        def publish():
            with kombu.Connection(KOMBU_URL) as pconn:
                producer = pconn.Producer(serializer='raw')
                for _ in range(count):
                    producer.publish(body, exchange=queue.exchange,
                                     routing_key=name)
        started = time.monotonic()
        publisher = threading.Thread(target=publish)
        publisher.start()
        with conn.Consumer(queue, callbacks=[on_message], prefetch_count=16,
                           accept=None):
            while not done.is_set():
                conn.drain_events(timeout=30)
        elapsed = time.monotonic() - started
        publisher.join()
        queue(conn.channel()).delete()
    assert sum(received) == count * size
    return total / elapsed / 1e6


class CPUMeter:
    """CPU seconds of this process, the source and the broker over a step.

    Shows where a pull's CPU goes against raw kombu's: on a host with two
    cores for both ends and the broker, CPU per MiB sets the rate.
    """

    def __init__(self, source_pid):
        self.pids = {'source': source_pid, 'destination': os.getpid()}
        broker = _broker_pid()
        if broker:
            self.pids['broker'] = broker
        self.samples = []

    def measure(self, fn, size):
        before = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        result = fn()
        after = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        self.samples.append({k: (after[k] - before[k]) * 1e3 / (size / MiB)
                             for k in self.pids})
        return result

    def summary(self):
        """'role x.x' CPU ms per MiB, medians over the samples."""
        return ', '.join('%s %.1f' % (k, median(s[k] for s in self.samples))
                         for k in self.pids)


def _cpu_seconds(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _broker_pid():
    out = subprocess.run(['pgrep', '-o', '-f', 'beam.smp'],
                         capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


class BrokerLink:
    """Traffic from the broker to its clients limited to ``rate``.

    An HTB class on the loopback device for packets from port 5672, so
    that raw kombu and our pull meet the same link between the broker and
    the receiving end, as between compute hosts. Only while the context is
    open; needs root and ``tc`` (iproute2).
    """

    def __init__(self, rate='1gbit'):
        self.rate = rate

    @staticmethod
    def _tc(*args, check=True):
        return subprocess.run(('tc',) + args, capture_output=True,
                              text=True, check=check)

    def __enter__(self):
        self._tc('qdisc', 'del', 'dev', 'lo', 'root', check=False)
        try:
            self._tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:',
                     'htb', 'default', '20')
            self._tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid',
                     '1:10', 'htb', 'rate', self.rate, 'ceil', self.rate)
            self._tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid',
                     '1:20', 'htb', 'rate', '100gbit', 'ceil', '100gbit')
            self._tc('filter', 'add', 'dev', 'lo', 'parent', '1:',
                     'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip',
                     'sport', '5672', '0xffff', 'flowid', '1:10')
        except (OSError, subprocess.CalledProcessError) as e:
            self.__exit__()
            raise RuntimeError(getattr(e, 'stderr', None) or str(e))
        return self

    def __exit__(self, *exc):
        self._tc('qdisc', 'del', 'dev', 'lo', 'root', check=False)


def median(values):
    return statistics.median(list(values))


def text_chain_bytes(total, seed):
    """Console-like text: boot messages with timestamps and counters."""
    rnd = random.Random(seed)
    words = [b'systemd[1]:', b'kernel:', b'Started', b'Reached target',
             b'eth0:', b'link up', b'cloud-init[812]:', b'login:',
             b'audit:', b'Mounted', b'/dev/vda1', b'OK']
    out = bytearray()
    i = 0
    while len(out) < total:
        line = b'[%11.6f] %s %s %s %d\r\n' % (
            i * 0.000731, rnd.choice(words), rnd.choice(words),
            rnd.choice(words), rnd.getrandbits(24))
        out += line * 1
        i += 1
    return bytes(out[:total])


def stage_costs():
    """CPU ms per MiB of each step a chunk goes through, in this process.

    Server: read + sha256 + compressibility probe, base64 (our serializer),
    JSON of the reply and of oslo.messaging's envelope around it; client:
    both JSON decodes, base64 decode, decompression, sha256.
    """
    serializer = cl_transport.RequestContextSerializer()
    costs = {}
    for label, raw in (('random', os.urandom(MiB)),
                       ('text', text_chain_bytes(MiB, 9))):
        steps = {}

        def timed(step, fn, n=10):
            started = time.perf_counter()
            for _ in range(n):
                value = fn()
            steps[step] = (time.perf_counter() - started) / n * 1e3
            return value
        chunk = timed('chunk (sha256, zlib)', lambda: (
            cl_objects.ConsoleLogChunk.from_bytes(
                raw, compress=True, instance_uuid=str(uuid.uuid4()),
                name='console.log', offset=0, eof=False)))
        primitive = timed('base64 encode', lambda: (
            serializer.serialize_entity({}, chunk)))
        reply = timed('JSON reply', lambda: jsonutils.dumps(
            {'result': primitive, 'failure': None, 'ending': True}))
        envelope = timed('JSON envelope', lambda: jsonutils.dumps(
            {'oslo.version': '2.0', 'oslo.message': reply}))
        decoded = timed('JSON decode x2', lambda: jsonutils.loads(
            jsonutils.loads(envelope)['oslo.message']))
        received = timed('base64 decode', lambda: (
            serializer.deserialize_entity({}, decoded['result'])))
        timed('unzip + sha256', lambda: (
            hashlib.sha256(received.raw_data()).digest()))
        costs[label] = steps
    return costs


def make_chain(host, total, kind, seed):
    """A 4-file chain of total bytes on host; its files."""
    part = total // 4
    names = ['console.log.2', 'console.log.1', 'console.log.0', 'console.log']
    if kind == 'random':
        rnd = random.Random(seed)
        files = {n: rnd.randbytes(part) for n in names}
    else:
        files = {n: text_chain_bytes(part, seed + i)
                 for i, n in enumerate(names)}
    instance = str(uuid.uuid4())
    test_rpc.write_chain(host.conf, instance, files)
    return instance, files


def naive_pull(conf, rpcapi, host, instance, files):
    """MB/s of one uncompressed 1 MiB read_chunk call at a time."""
    started = time.monotonic()
    total = 0
    for name, data in files.items():
        offset = 0
        while offset < len(data):
            chunk = rpcapi.read_chunk({}, host, instance, name, offset, MiB,
                                      compress=False)
            offset += len(chunk.raw_data())
        total += offset
    return total / (time.monotonic() - started) / 1e6


def _fresh_chain(conf, instance):
    chain = cl_chain.ConsoleLogChain.for_instance(instance, conf=conf)
    shutil.rmtree(chain.directory, ignore_errors=True)
    os.makedirs(chain.directory)
    return chain


def our_pull(conf, rpcapi, host, instance, files, meter=None):
    chain = _fresh_chain(conf, instance)
    if meter is None:
        result = transfer.pull(conf, rpcapi, host, instance, chain=chain)
    else:
        result = meter.measure(lambda: transfer.pull(
            conf, rpcapi, host, instance, chain=chain), SIZE)
    assert result.bytes == sum(len(d) for d in files.values())
    with open(os.path.join(chain.directory, chain.history()[-1].name),
              'rb') as f:
        assert f.read() == test_rpc.chain_bytes(files)
    return result


def puller(root, topic, host='dst', **overrides):
    """``(conf, rpcapi)`` of a destination with the bench's settings."""
    conf = test_rpc.make_conf(root, host, topic, chunk_size=MiB,
                              rpc_timeout=60, pull_timeout=600,
                              history_max_bytes=1024 * MiB, **overrides)
    return conf, cl_api.ConsoleLogAPI(conf, transport_url=base.TRANSPORT_URL)


def rss_child(root, topic, instance, expected, bulk=True):
    """Run in a child: pull, print RSS before and peak after, in KiB."""
    conf, rpcapi = puller(root, topic, host='rss', bulk_transfer=bulk)
    chain = cl_chain.ConsoleLogChain.for_instance(instance, conf=conf)
    os.makedirs(chain.directory, exist_ok=True)
    # Warm up the client (connections, reply queue) before the baseline.
    rpcapi.describe({}, 'src', instance)
    before = _status_kib('VmRSS')
    peak = [before]
    stop = threading.Event()

    def sample():
        # ru_maxrss would carry the parent's peak across exec; sample.
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _status_kib('VmRSS'))
    sampler = threading.Thread(target=sample)
    sampler.start()
    result = transfer.pull(conf, rpcapi, 'src', instance, chain=chain)
    stop.set()
    sampler.join()
    assert result.bytes == expected, result
    assert result.bulk_bytes == (expected if bulk else 0), result
    print('rss', before, peak[0], _status_kib('VmHWM'), result.seconds)
    rpcapi.transport.cleanup()


def on_a_link(conf, rpcapi, zlib_conf, zlib_api, rnd_instance, rnd_files,
              txt_instance, txt_files, rate='1gbit', runs=3):
    """The same comparison where a link, not the CPU, is the limit.

    On loopback the CPU is the limit and compressing console text costs
    more than it saves; between compute hosts on a slower link the wire is
    the limit, which is where ``bulk_compression`` pays.
    """
    try:
        link = BrokerLink(rate)
        link.__enter__()
    except RuntimeError as e:
        print('on a %s link: not measured (needs root and tc: %s)' % (
            rate, str(e).strip()))
        return
    try:
        rates = [raw_kombu() for _ in range(runs)]
        kombu_rate = median(rates)
        print('on a %s link from the broker (tc): raw kombu %7.1f MB/s '
              '(baseline, median of %d)' % (rate, kombu_rate, runs))
        for label, path_conf, path_api, instance, files, goal in (
                ('random, bulk', conf, rpcapi, rnd_instance, rnd_files,
                 0.5),
                ('text, bulk', conf, rpcapi, txt_instance, txt_files, 1.0),
                ('text, bulk, bulk_compression = True', zlib_conf,
                 zlib_api, txt_instance, txt_files, 1.0)):
            results = [our_pull(path_conf, path_api, 'src', instance, files)
                       for _ in range(runs)]
            pull_rate = median(r.rate / 1e6 for r in results)
            print('on a %s link: our pull, %-36s: %7.1f MB/s  %.2fx raw '
                  'kombu (goal >= %.1fx)  wire %.1f%% of bytes' % (
                      rate, label, pull_rate, pull_rate / kombu_rate, goal,
                      100.0 * results[-1].wire_bytes / results[-1].bytes))
    finally:
        link.__exit__()


def _status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def run():
    problem = base.ensure_rabbitmq()
    if problem:
        print('cannot run: %s' % problem)
        return
    root = tempfile.mkdtemp(prefix='consolelog-bench-')
    topic = 'consolelog-bench-%s' % uuid.uuid4().hex
    # The source allows the largest window, so that the tuning rows measure
    # the puller's bulk_window.
    src = base.HostProcess(root, 'src', topic, overrides={
        'chunk_size': MiB, 'bulk_window': 64 * MiB})
    src.start()
    try:
        _run(root, topic, src)
    finally:
        src.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run(root, topic, src):
    conf, rpcapi = puller(root, topic)
    chunk_conf, chunk_rpcapi = puller(root, topic, bulk_transfer=False)
    print('chunk_size %d KiB, pull_window %d, compression %s, bulk_window '
          '%d MiB' % (
              conf.consolelog.chunk_size // 1024,
              conf.consolelog.pull_window, conf.consolelog.compression,
              conf.consolelog.bulk_window // MiB))
    for label, steps in stage_costs().items():
        print('CPU per MiB, %-6s: %s; total %.1f ms' % (
            label, ', '.join('%s %.1f ms' % kv for kv in steps.items()),
            sum(steps.values())))
    kombu_meter = CPUMeter(src.proc.pid)
    kombu_rates = [kombu_meter.measure(raw_kombu, SIZE) for _ in range(RUNS)]
    kombu_rate = median(kombu_rates)
    print('raw kombu pipelined, 1 MiB messages: %7.1f MB/s (baseline; '
          'median of %d, %.0f-%.0f)' % (kombu_rate, RUNS, min(kombu_rates),
                                        max(kombu_rates)))
    print('  CPU ms per MiB (publisher and consumer are the destination '
          'process): %s' % kombu_meter.summary())
    rnd_instance, rnd_files = make_chain(src, SIZE, 'random', 1)
    txt_instance, txt_files = make_chain(src, SIZE, 'text', 2)
    rate = naive_pull(conf, rpcapi, 'src', rnd_instance, rnd_files)
    print('naive pull, 1 call at a time, random: %7.1f MB/s  %.2fx raw kombu'
          % (rate, rate / kombu_rate))
    for label, instance, files, goal in (
            ('random', rnd_instance, rnd_files, 0.5),
            ('text', txt_instance, txt_files, 1.0)):
        for path, path_conf, path_api, runs in (
                ('bulk 1.2', conf, rpcapi, RUNS),
                ('chunk 1.1', chunk_conf, chunk_rpcapi, 2)):
            meter = CPUMeter(src.proc.pid)
            results = [our_pull(path_conf, path_api, 'src', instance, files,
                                meter) for _ in range(runs)]
            rates = [r.rate / 1e6 for r in results]
            rate = median(rates)
            last = results[-1]
            print('our pull, %-9s, 64 MiB %-6s: %7.1f MB/s  %.2fx raw '
                  'kombu (goal >= %.1fx; median of %d, %.0f-%.0f)  wire '
                  '%.1f%% of bytes, %.0f%% over bulk' % (
                      path, label, rate, rate / kombu_rate, goal, runs,
                      min(rates), max(rates),
                      100.0 * last.wire_bytes / last.bytes,
                      100.0 * last.bulk_bytes / last.bytes))
            print('  CPU ms per MiB: %s' % meter.summary())
    zlib_conf, zlib_api = puller(root, topic, bulk_compression=True)
    meter = CPUMeter(src.proc.pid)
    rates = [our_pull(zlib_conf, zlib_api, 'src', txt_instance, txt_files,
                      meter).rate / 1e6 for _ in range(2)]
    print('tuning: text, bulk, bulk_compression = True: %7.1f MB/s  %.2fx '
          'raw kombu; CPU ms per MiB: %s' % (
              median(rates), median(rates) / kombu_rate, meter.summary()))
    on_a_link(conf, rpcapi, zlib_conf, zlib_api, rnd_instance, rnd_files,
              txt_instance, txt_files)
    zlib_api.transport.cleanup()
    for window in (2 * MiB, 4 * MiB, 16 * MiB):
        window_conf, window_api = puller(root, topic, bulk_window=window)
        result = our_pull(window_conf, window_api, 'src', rnd_instance,
                          rnd_files)
        rate = result.rate / 1e6
        print('tuning: random, bulk, bulk_window %d MiB: %7.1f MB/s  '
              '%.2fx raw kombu' % (window // MiB, rate, rate / kombu_rate))
        window_api.transport.cleanup()
    for window, chunk in ((1, MiB), (8, MiB), (4, 256 * 1024)):
        result = transfer.pull(
            chunk_conf, chunk_rpcapi, 'src', rnd_instance, window=window,
            chunk_size=chunk, chain=_fresh_chain(chunk_conf, rnd_instance))
        rate = result.rate / 1e6
        print('tuning: random, chunk calls, window %d, chunk %d KiB: %7.1f '
              'MB/s  %.2fx raw kombu' % (window, chunk // 1024, rate,
                                         rate / kombu_rate))
    rpcapi.transport.cleanup()
    chunk_rpcapi.transport.cleanup()
    big_instance, big_files = make_chain(src, RSS_SIZE, 'random', 3)
    expected = sum(len(d) for d in big_files.values())
    del big_files
    out = subprocess.run(
        [sys.executable, '-c',
         'from nova_consolelog.tests.bench import bench_transfer as b; '
         'b.rss_child(%r, %r, %r, %d)' % (root, topic, big_instance,
                                          expected)],
        capture_output=True, text=True, timeout=900, cwd=base.REPO)
    line = [x for x in out.stdout.splitlines() if x.startswith('rss')]
    if not line:
        print('RSS child failed: %s' % out.stderr[-2000:])
        return
    _, before, peak, hwm, seconds = line[0].split()
    growth = (int(peak) - int(before)) / 1024.0
    print('peak RSS growth pulling 256 MiB random: %.1f MiB (goal <= 32 '
          'MiB; RSS before %.1f MiB, sampled peak %.1f MiB, VmHWM %.1f '
          'MiB, %.1f MB/s)' % (
              growth, int(before) / 1024.0, int(peak) / 1024.0,
              int(hwm) / 1024.0, RSS_SIZE / float(seconds) / 1e6))
