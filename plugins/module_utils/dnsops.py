# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS for the API name: read it from the authoritative server, check we may change it,
change it — RFC 2136 dynamic updates signed with TSIG (BIND and friends) or Route53.

Why our own code rather than community.general.nsupdate / amazon.aws.route53: failover needs,
in one step, the old value (so failback can put it back), a prerequisite-guarded change (so
two operators cannot flip the name back and forth), and a read-back from the authoritative
server; preflight needs a prerequisite-only update that proves the key works and changes
nothing. The modules above do the change alone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import traceback

try:
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdataset
    import dns.rdatatype
    import dns.tsig
    import dns.tsigkeyring
    import dns.update
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError:
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line

_KEY_RE = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.S)
_ALG_RE = re.compile(r'algorithm\s+"?([A-Za-z0-9.-]+)"?\s*;')
_SECRET_RE = re.compile(r'secret\s+"([^"]+)"\s*;')


def read_tsig_key_file(path):
    """Parse a BIND/nsupdate key file: (name, algorithm, base64 secret)."""
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise DRError("TSIG key file %s cannot be read: %s" % (path, exc.strerror or first_line(exc)))
    match = _KEY_RE.search(text)
    if not match:
        raise DRError("TSIG key file %s has no key { algorithm ...; secret ...; }; block" % path)
    body = match.group(2)
    algorithm = _ALG_RE.search(body)
    secret = _SECRET_RE.search(body)
    if not secret:
        raise DRError("TSIG key file %s: key %s has no secret" % (path, match.group(1)))
    return match.group(1), (algorithm.group(1) if algorithm else "hmac-sha256"), secret.group(1)


class Rfc2136(object):
    """One zone on one authoritative server, updated with a TSIG key."""

    def __init__(self, server, zone, port=53, tsig_key_file=None, tsig_key_name=None, tsig_secret=None,
                 tsig_algorithm="hmac-sha256", timeout=5.0):
        if not HAS_DNSPYTHON:
            raise DRError("the dnspython Python library is required for DNS updates")
        self.server, self.port, self.timeout = server, int(port), float(timeout)
        self.zone = dns.name.from_text(zone)
        if tsig_key_file:
            tsig_key_name, tsig_algorithm, tsig_secret = read_tsig_key_file(tsig_key_file)
        if not (tsig_key_name and tsig_secret):
            raise DRError("DNS zone %s: a TSIG key is required (tsig_key_file, or tsig_key_name and tsig_secret)"
                          % zone)
        self.key_name = tsig_key_name
        self.keyring = dns.tsigkeyring.from_text({tsig_key_name: (tsig_algorithm, tsig_secret)})
        self.label = "DNS server %s:%s (zone %s)" % (server, port, zone)

    def _relative(self, record):
        name = dns.name.from_text(record)
        if not name.is_subdomain(self.zone):
            raise DRError("record %s is not in zone %s" % (record, self.zone))
        return name

    def _send(self, message):
        try:
            return dns.query.tcp(message, self.server, port=self.port, timeout=self.timeout)
        except dns.tsig.PeerBadKey:
            raise DRError("%s refused TSIG key %s (BADKEY): the key is unknown to the server" % (self.label, self.key_name))
        except dns.tsig.PeerBadSignature:
            raise DRError("%s refused TSIG key %s (BADSIG): wrong secret" % (self.label, self.key_name))
        except dns.tsig.PeerError as exc:
            raise DRError("%s refused TSIG key %s: %s" % (self.label, self.key_name, first_line(exc)))
        except (OSError, EOFError, dns.exception.Timeout) as exc:
            raise DRError("%s does not answer: %s" % (self.label, first_line(exc) or "timeout"))

    def lookup(self, record, rdtype="A"):
        """The record as the authoritative server answers now: (ttl, sorted values)."""
        name = self._relative(record)
        query = dns.message.make_query(name, rdtype)
        response = self._send(query)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DRError("%s answered %s for %s" % (self.label, dns.rcode.to_text(response.rcode()), record))
        for rrset in response.answer:
            # Match the name too: for a CNAME the answer also carries the target's records.
            if rrset.name == name and rrset.rdtype == dns.rdatatype.from_text(rdtype):
                return rrset.ttl, sorted(r.to_text() for r in rrset)
        return None, []

    def check_update_allowed(self, record):
        """A prerequisite-only update ("the name exists"): the server checks the key and the
        zone's update policy and changes nothing."""
        update = dns.update.UpdateMessage(self.zone, keyring=self.keyring, keyname=self.key_name)
        update.present(self._relative(record))
        response = self._send(update)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return True
        if rcode == dns.rcode.NXDOMAIN:
            raise DRError("%s: %s does not exist yet (the key was accepted)" % (self.label, record))
        raise DRError("%s refused an update with key %s: %s" % (self.label, self.key_name, dns.rcode.to_text(rcode)))

    def replace(self, record, rdtype, values, ttl, expect=None):
        """Set the record to `values`. With `expect`, only when it currently holds exactly
        those values (RFC 2136 prerequisite), so a stale operator cannot undo a newer change."""
        name = self._relative(record)
        update = dns.update.UpdateMessage(self.zone, keyring=self.keyring, keyname=self.key_name)
        if expect:
            # RFC 2136 3.2.1: a value-dependent prerequisite carries TTL 0 (BIND answers FORMERR otherwise).
            update.present(name, dns.rdataset.from_text_list("IN", rdtype, 0, expect))
        update.replace(name, int(ttl), rdtype, *values)
        response = self._send(update)
        rcode = response.rcode()
        if rcode == dns.rcode.NXRRSET:
            raise DRError("%s: %s %s no longer holds %s (someone changed it): nothing changed"
                          % (self.label, record, rdtype, ", ".join(expect or [])))
        if rcode != dns.rcode.NOERROR:
            raise DRError("%s refused the update of %s: %s" % (self.label, record, dns.rcode.to_text(rcode)))
