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

"""The e2e guest: a boot sector that counts on the serial console.

It prints ``cnt 00000001\\r\\n``, ``cnt 00000002\\r\\n``, ... to COM1, 16
lines per BIOS timer tick (``hlt`` sleeps until the 18.2 Hz tick), about 290
lines/s whatever the CPU speed (TCG or KVM). A counter makes lost,
repeated and reordered console output visible: every number from the first
to the last must appear exactly once, in order.
"""

import os
import re
import subprocess
import tempfile
import time

BOOT_SECTOR_ASM = r"""
    .code16
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    sti
tick:
    mov $16, %cx            /* lines per timer tick */
line:
    mov $msg, %si
putc:
    lodsb
    test %al, %al
    jz increment
    mov $0x3f8, %dx         /* COM1 data port */
    out %al, %dx
    jmp putc
increment:                  /* add one to the ASCII counter */
    mov $last_digit, %si
carry:
    movb (%si), %al
    inc %al
    cmp $'9'+1, %al
    jne store
    movb $'0', (%si)
    dec %si
    jmp carry
store:
    movb %al, (%si)
    loop line
    hlt                     /* sleep until the next timer interrupt */
    jmp tick
msg:
    .ascii "cnt 0000000"
last_digit:
    .ascii "1\r\n"
    .byte 0
    .org 510
    .byte 0x55, 0xaa
"""

FLOPPY_SIZE = 1474560  # SeaBIOS derives the floppy geometry from the size

LINE_RE = re.compile(rb'cnt (\d{8})\r?\n')


def build_boot_image(directory, lines_per_tick=16):
    """Assemble the boot sector into a 1.44 MB floppy image; its path.

    ``lines_per_tick`` (1-255) sets the pace: about 18.2 times that many
    lines a second.
    """
    if not 1 <= lines_per_tick <= 255:
        raise ValueError('lines_per_tick must be 1-255, not %r'
                         % lines_per_tick)
    src = os.path.join(directory, 'boot.S')
    obj = os.path.join(directory, 'boot.o')
    raw = os.path.join(directory, 'boot.bin')
    img = os.path.join(directory, 'boot.img')
    with open(src, 'w') as f:
        f.write(BOOT_SECTOR_ASM.replace(
            'mov $16, %cx', 'mov $%d, %%cx' % lines_per_tick))
    subprocess.run(['as', '--32', '-o', obj, src], check=True,
                   capture_output=True)
    subprocess.run(['ld', '-m', 'elf_i386', '-Ttext', '0x7c00',
                    '--oformat', 'binary', '-o', raw, obj], check=True,
                   capture_output=True)
    with open(raw, 'rb') as f:
        sector = f.read()
    if len(sector) != 512 or sector[-2:] != b'\x55\xaa':
        raise RuntimeError('boot sector is %d bytes, not a boot sector'
                           % len(sector))
    with open(img, 'wb') as f:
        f.write(sector)
        f.truncate(FLOPPY_SIZE)
    return img


def kvm_works(image, seconds=3.0):
    """Whether a KVM guest really runs here.

    /dev/kvm can exist and QEMU start on it while the guest never runs
    (nested virtualisation without VMX/SVM): boot the image briefly and
    look for counter lines.
    """
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'serial.log')
        proc = subprocess.Popen(
            ['qemu-system-x86_64', '-machine', 'pc,accel=kvm', '-m', '16',
             '-display', 'none', '-monitor', 'none',
             '-drive', 'file=%s,if=floppy,format=raw,readonly=on' % image,
             '-boot', 'a', '-serial', 'file:%s' % out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
                if os.path.exists(out) and os.path.getsize(out) > 0:
                    return True
            return False
        finally:
            proc.kill()
            proc.wait()


def domain_xml(uuid, instance_dir, image, virt_type='qemu'):
    """The guest in nova's console shape.

    ``<serial type="pty">`` with ``<log file="<instance dir>/console.log"
    append="off"/>`` and a ``<console type="pty">`` on it, as
    ``LibvirtDriver._create_consoles`` writes for KVM/QEMU. The boot floppy
    is read-only, so libvirt finds the migration safe without shared
    storage flags.
    """
    return """<domain type='%(virt_type)s'>
  <name>instance-%(short)s</name>
  <uuid>%(uuid)s</uuid>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='fd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='floppy'>
      <driver name='qemu' type='raw'/>
      <source file='%(image)s'/>
      <target dev='fda' bus='fdc'/>
      <readonly/>
    </disk>
    <serial type='pty'>
      <log file='%(instance_dir)s/console.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
""" % {'virt_type': virt_type, 'short': uuid[:8], 'uuid': uuid,
       'image': image, 'instance_dir': instance_dir}


def counters(data):
    """The counter values in console bytes, in order of appearance.

    A line cut at either end of ``data`` (a tail read starts mid-line; the
    guest may be mid-line when read) is ignored.
    """
    return [int(m.group(1)) for m in LINE_RE.finditer(data)]


def check_sequence(values):
    """Problems of a counter sequence: gaps, repeats, reordering.

    Returns a list of human-readable problems, empty when every number
    from the first to the last appears exactly once and in order.
    """
    problems = []
    for prev, cur in zip(values, values[1:]):
        if cur == prev + 1:
            continue
        if cur <= prev:
            problems.append('%d after %d (repeat or reorder)' % (cur, prev))
        else:
            problems.append('%d..%d missing' % (prev + 1, cur - 1))
        if len(problems) >= 20:
            problems.append('...')
            break
    return problems


def read_virtlogd_chain(directory, log_name='console.log'):
    """A plain reading of virtlogd's files in ``directory``, oldest first.

    Independent of the code under test: ``console.log.N`` ... ``.0``, then
    ``console.log``. Missing files are skipped.
    """
    backups = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return b''
    for name in names:
        suffix = name[len(log_name) + 1:]
        if name.startswith(log_name + '.') and suffix.isdigit():
            backups.append(int(suffix))
    data = b''
    for index in sorted(backups, reverse=True):
        with open(os.path.join(directory, '%s.%d' % (log_name, index)),
                  'rb') as f:
            data += f.read()
    try:
        with open(os.path.join(directory, log_name), 'rb') as f:
            data += f.read()
    except FileNotFoundError:
        pass
    return data


def describe_files(directory):
    """One line per file of ``directory``: size and counter range.

    Attached to failures so that a lost, repeated or misordered piece can
    be traced to the file holding it.
    """
    rows = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return '%s: no such directory' % directory
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except IsADirectoryError:
            rows.append('%s/' % name)
            continue
        except FileNotFoundError:  # moved or deleted while listing
            rows.append('%s: gone while listed' % name)
            continue
        values = counters(data)
        rows.append('%s: %d bytes, %s' % (
            name, len(data),
            '%d..%d (%d lines)' % (values[0], values[-1], len(values))
            if values else 'no counter lines'))
    return '\n'.join(rows)
