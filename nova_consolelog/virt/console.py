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

"""Where a domain's console log is, from its XML in the shapes nova writes."""

from xml.etree import ElementTree

from nova_consolelog import exception


def _domain_xml(domain_or_xml):
    if isinstance(domain_or_xml, bytes):
        try:
            return domain_or_xml.decode('utf-8')
        except UnicodeDecodeError as e:
            raise exception.InvalidInput(
                reason='domain XML is not UTF-8: %s' % e)
    if isinstance(domain_or_xml, str):
        return domain_or_xml
    xml_desc = getattr(domain_or_xml, 'XMLDesc', None)
    if xml_desc is None:
        raise exception.InvalidInput(
            reason='expected a libvirt domain or its XML, got %s' %
            type(domain_or_xml).__name__)
    return xml_desc(0)


def _target_port(device):
    target = device.find('target')
    if target is None:
        return None
    try:
        return int(target.get('port'))
    except (TypeError, ValueError):
        return None


def _device_log_path(device):
    """The file a character device logs to, or None.

    ``<log file=.../>`` is virtlogd's log of a ``pty`` or ``tcp`` device;
    a ``file`` device writes to its ``<source path=.../>`` (nova before
    virtlogd, and fakelibvirt). The ``<source path>`` of a ``pty`` is the
    terminal, not a log.
    """
    log = device.find('log')
    if log is not None and log.get('file'):
        return log.get('file')
    if device.get('type') == 'file':
        source = device.find('source')
        if source is not None and source.get('path'):
            return source.get('path')
    return None


def console_log_path(domain_or_xml):
    """The console log file of a domain, or None when it logs nowhere.

    :param domain_or_xml: a libvirt domain (anything with ``XMLDesc``) or
        its XML as ``str``/``bytes``.
    :raises InvalidInput: the argument is neither, or the XML is not a
        domain.

    nova writes a ``<serial type="pty">`` with
    ``<log file="<instance dir>/console.log" append="off"/>``; with
    ``[serial_console] enabled`` it writes ``tcp`` serials instead and only
    port 0 gets the ``<log>`` (the first serial port receives the boot
    messages); ``file`` serials/consoles write to ``<source path>``. Serial
    devices come first, port 0 before the others, then consoles. A path is
    returned as written in the XML (fakelibvirt writes a relative one).
    """
    xml = _domain_xml(domain_or_xml)
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise exception.InvalidInput(reason='bad domain XML: %s' % e)
    if root.tag != 'domain':
        raise exception.InvalidInput(
            reason='expected <domain>, got <%s>' % root.tag)
    devices = root.find('devices')
    if devices is None:
        return None
    serials = sorted(devices.findall('serial'),
                     key=lambda d: (_target_port(d) != 0))
    for device in serials + devices.findall('console'):
        path = _device_log_path(device)
        if path:
            return path
    return None
