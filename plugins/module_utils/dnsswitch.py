# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DNS switch: point one name at new values and prove the authoritative side answers them.

Two providers behind one interface (`read`, `probe`, `apply`, `wait`, `answer`):

- `Rfc2136Zone`: a zone on an authoritative server (BIND and friends), changed with a dynamic
  update signed with a TSIG key. `expect` becomes an RFC 2136 prerequisite ("this RRset holds
  exactly these values"), checked by the server in the same transaction as the change.
- `Route53Zone`: a Route53 hosted zone (any AWS-compatible endpoint; in the lab, moto, an AWS
  emulator). An UPSERT has no prerequisite, so `expect` is compared just before the UPSERT and
  the record is read back after it: a writer landing in between is reported, not prevented.

`switch()` is the one entry point: read, decide, change (or, in check mode, say what would
change), wait for Route53 to be in sync, read back from the authoritative side, and return
before/after, the answer, and a `dr_report` fragment for the dr_timeline callback.

Plain Python (no Ansible import): tests and the lab call it directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import time

try:
    import botocore.exceptions
    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False

from ansible_collections.auditron.dr.plugins.module_utils import aws, dnsops
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, utc_now
# Whether dnspython is there is dnsops' to say (one import check for both files).
from ansible_collections.auditron.dr.plugins.module_utils.dnsops import (  # noqa: F401 pylint: disable=unused-import
    DNSPYTHON_IMPORT_ERROR, HAS_DNSPYTHON)

if HAS_DNSPYTHON:
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdataset
    import dns.rdatatype
    import dns.update

RECORD_TYPES = ("A", "AAAA", "CNAME")
PROVIDERS = ("rfc2136", "route53")
DEFAULT_TTL = 60
DEFAULT_SYNC_TIMEOUT = 120
# HTTP statuses with which an AWS-compatible endpoint says "no such operation" (moto, the AWS
# emulator, answers TestDNSAnswer with a bare 404): the answer then comes from the record list.
_NOT_IMPLEMENTED_STATUSES = (404, 501)


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------

def record_name(record):
    """The record as people write it: lower case, no trailing dot."""
    return str(record or "").strip().rstrip(".").lower()


def normalize_values(rdtype, values):
    """Canonical, sorted, de-duplicated text of `values` for `rdtype`, so that what a server
    answers and what a user wrote compare equal ('10.0.0.01' is refused, 'LB.example.com' and
    'lb.example.com.' are the same target). CNAME targets are taken as absolute names."""
    rdtype = (rdtype or "A").upper()
    if rdtype not in RECORD_TYPES:
        raise DRError("record type %s is not supported: use one of %s" % (rdtype, ", ".join(RECORD_TYPES)))
    canonical = set()
    for value in values or []:
        text = str(value).strip()
        if not text:
            raise DRError("an empty value is not a valid %s record" % rdtype)
        if rdtype == "CNAME":
            canonical.add(text.lower().rstrip(".") + ".")
            continue
        try:
            address = ipaddress.IPv4Address(text) if rdtype == "A" else ipaddress.IPv6Address(text)
        except ValueError:
            family = "IPv4" if rdtype == "A" else "IPv6"
            raise DRError("%s is not an %s address (record type %s)" % (text, family, rdtype))
        canonical.add(str(address))
    return sorted(canonical)


def state(values=None, ttl=None):
    """A record's state as every result reports it: {values, ttl}; no values means no record."""
    values = list(values or [])
    return {"values": values, "ttl": int(ttl) if (ttl is not None and values) else None}


def show(values):
    return ", ".join(values) if values else "none"


def zone_file_lines(record, rdtype, record_state):
    """The record in zone-file syntax, for diff mode."""
    if not record_state["values"]:
        return ""
    return "".join("%s. %s IN %s %s\n" % (record_name(record), record_state["ttl"], rdtype, value)
                   for value in record_state["values"])


# ----------------------------------------------------------------------------------------------
# RFC 2136 (BIND and friends)
# ----------------------------------------------------------------------------------------------

class Rfc2136Zone(dnsops.Rfc2136):
    """A zone on its authoritative server, changed by TSIG-signed dynamic updates.

    Builds its own update rather than calling Rfc2136.replace(expect=...): RFC 2136 section
    2.4.2 wants the TTL of a value-dependent prerequisite to be zero, and BIND answers FORMERR
    to anything else.
    """

    provider = "rfc2136"

    def __init__(self, server, zone, **kwargs):
        if not server or not zone:
            raise DRError("provider rfc2136 needs dns.server and dns.zone (the zone's authoritative server)")
        super(Rfc2136Zone, self).__init__(server, zone, **kwargs)
        self.where = "%s:%s" % (server, self.port)

    def _query(self, record, rdtype):
        name = self._relative(record)
        response = self._send(dns.message.make_query(name, rdtype))
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DRError("%s answered %s for %s %s" % (self.label, dns.rcode.to_text(rcode), record, rdtype))
        if not response.flags & dns.flags.AA:
            # Only the zone's own server knows what the record holds now; a cache or a
            # forwarder would answer from the past.
            raise DRError("%s is not authoritative for %s: point dns.server at the zone's primary server"
                          % (self.label, self.zone.to_text(omit_final_dot=True)))
        return name, response

    def read(self, record, rdtype):
        """The record as the authoritative server answers now (a plain query over TCP)."""
        name, response = self._query(record, rdtype)
        wanted = dns.rdatatype.from_text(rdtype)
        for rrset in response.answer:
            if rrset.name != name:
                continue  # the target of a CNAME, answered alongside it
            if rrset.rdtype == wanted:
                return state(normalize_values(rdtype, [r.to_text() for r in rrset]), rrset.ttl)
            if rrset.rdtype == dns.rdatatype.CNAME:
                raise DRError("%s: %s is a CNAME to %s; an %s record cannot sit beside it: remove the CNAME first"
                              % (self.label, record_name(record), show([r.to_text() for r in rrset]), rdtype))
        return state()

    def answer(self, record, rdtype):
        """What the authoritative server answers after the change."""
        answered = self.read(record, rdtype)
        return dict(answered, server=self.where, method="DNS query over TCP to the zone's authoritative server")

    def probe(self, record):
        """Check mode: prove the server answers updates and accepts the key, changing nothing
        (a prerequisite-only update: "the zone apex exists")."""
        update = dns.update.UpdateMessage(self.zone, keyring=self.keyring, keyname=self.key_name)
        update.present(self.zone)
        self._check_rcode(self._send(update).rcode(), record, None)

    def _check_rcode(self, rcode, record, expect):
        if rcode == dns.rcode.NOERROR:
            return
        if rcode == dns.rcode.NXRRSET:
            raise DRError("%s: %s no longer holds %s (someone changed it in the meantime): nothing changed"
                          % (self.label, record_name(record), show(expect)))
        hints = {
            dns.rcode.REFUSED: " (the update-policy does not let key %s change this name and type)" % self.key_name,
            dns.rcode.NOTAUTH: " (the server is not the primary for the zone, or does not accept key %s)"
                               % self.key_name,
            dns.rcode.NOTZONE: " (the name is not in the zone)",
        }
        raise DRError("%s refused the update of %s: %s%s" % (self.label, record_name(record), dns.rcode.to_text(rcode),
                                                             hints.get(rcode, "")))

    def apply(self, record, rdtype, values, ttl, expect=None, current=None):
        """Replace the RRset; with `expect`, only if it holds exactly those values (the server
        checks the prerequisite and the change in one transaction)."""
        name = self._relative(record)
        update = dns.update.UpdateMessage(self.zone, keyring=self.keyring, keyname=self.key_name)
        if expect:
            update.present(name, dns.rdataset.from_text_list("IN", rdtype, 0, expect))
        update.replace(name, int(ttl), rdtype, *values)
        self._check_rcode(self._send(update).rcode(), record, expect)
        # The primary applies an update before it answers: nothing to wait for.
        return {"id": None, "status": "applied"}

    def wait(self, change, timeout):  # pylint: disable=unused-argument
        return change["status"]


# ----------------------------------------------------------------------------------------------
# Route53
# ----------------------------------------------------------------------------------------------

def _client_error_code(exc):
    if HAS_BOTOCORE and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", ""), exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode")
    return None, None


class Route53Zone(object):
    """A Route53 hosted zone reached through any AWS-compatible endpoint.

    Differences from RFC 2136 the callers should know: an UPSERT carries no prerequisite (a
    change batch of DELETE-with-old-values + CREATE would be one on AWS, but the emulator the
    lab uses does not check DELETE values against the current ones); a change is PENDING until
    every Route53 name server has it (`wait`); the DNS answer comes from TestDNSAnswer where the
    endpoint implements it, else from the record list.
    """

    provider = "route53"

    def __init__(self, zone_id, aws_params, client=None, sleep=time.sleep, clock=time.monotonic):
        if not zone_id:
            raise DRError("provider route53 needs dns.route53.zone_id (the hosted zone id)")
        self.zone_id = zone_id.split("/")[-1]
        self.aws_params = aws_params or {}
        self.endpoint = aws.endpoint_label("route53", self.aws_params)
        self.label = "Route53 hosted zone %s at %s" % (self.zone_id, self.endpoint)
        self.where = self.label
        self._client = client
        self._sleep, self._clock = sleep, clock
        self._has_test_dns_answer = True

    @property
    def client(self):
        if self._client is None:
            self._client = aws.client("route53", self.aws_params, max_attempts=3)
        return self._client

    def _error(self, exc, doing):
        """One line for a failed call; a missing zone and a silent endpoint are named as such."""
        if isinstance(exc, DRError):
            return exc
        code, _status = _client_error_code(exc)
        if code == "NoSuchHostedZone":
            return DRError("Route53 hosted zone %s not found at %s (NoSuchHostedZone): nothing changed"
                           % (self.zone_id, self.endpoint))
        error = aws.describe_error("route53", self.aws_params, exc, "zone %s, %s" % (self.zone_id, doing))
        return error

    def _record_set(self, record, rdtype):
        try:
            listed = self.client.list_resource_record_sets(
                HostedZoneId=self.zone_id, StartRecordName=record_name(record) + ".", StartRecordType=rdtype,
                MaxItems="1")
        except Exception as exc:  # pylint: disable=broad-except
            raise self._error(exc, "reading %s %s" % (record_name(record), rdtype))
        for record_set in listed.get("ResourceRecordSets", []):
            if record_name(record_set.get("Name")) == record_name(record) and record_set.get("Type") == rdtype:
                return record_set
        return None

    def read(self, record, rdtype):
        """The record as the Route53 API holds it now."""
        record_set = self._record_set(record, rdtype)
        if record_set is None:
            return state()
        if record_set.get("AliasTarget") or record_set.get("SetIdentifier"):
            # Alias and routing-policy record sets have no plain value to switch and restore.
            raise DRError("%s: %s %s is an alias or routing-policy record set: switch it with a plain record set "
                          "or with amazon.aws.route53" % (self.label, record_name(record), rdtype))
        values = [item["Value"] for item in record_set.get("ResourceRecords", [])]
        return state(normalize_values(rdtype, values), record_set.get("TTL"))

    def answer(self, record, rdtype):
        """What Route53's name servers answer (TestDNSAnswer); where the endpoint does not
        implement it (moto, the AWS emulator, answers 404), the record as the API lists it."""
        if self._has_test_dns_answer:
            try:
                tested = self.client.test_dns_answer(HostedZoneId=self.zone_id,
                                                     RecordName=record_name(record) + ".", RecordType=rdtype)
            except Exception as exc:  # pylint: disable=broad-except
                code, status = _client_error_code(exc)
                if status in _NOT_IMPLEMENTED_STATUSES and not str(code).startswith("NoSuch"):
                    self._has_test_dns_answer = False
                else:
                    raise self._error(exc, "TestDNSAnswer for %s %s" % (record_name(record), rdtype))
            else:
                values = (tested.get("RecordData") or []) if tested.get("ResponseCode") == "NOERROR" else []
                return dict(state(normalize_values(rdtype, values), None), server="%s (name server %s)"
                            % (self.label, tested.get("Nameserver") or "?"), method="TestDNSAnswer")
        listed = self.read(record, rdtype)
        return dict(listed, server=self.label,
                    method="ListResourceRecordSets (the endpoint does not implement TestDNSAnswer)")

    def probe(self, record):
        """Check mode: `read` already proved the zone exists and the credentials work."""
        return None

    def apply(self, record, rdtype, values, ttl, expect=None, current=None):
        """UPSERT the record set; `expect` was compared with `current` just before (see class)."""
        batch = {
            "Comment": "auditron.dr dns_record: %s %s %s -> %s" % (
                record_name(record), rdtype, show((current or {}).get("values")), show(values)),
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record_name(record) + ".", "Type": rdtype, "TTL": int(ttl),
                "ResourceRecords": [{"Value": value} for value in values]}}],
        }
        try:
            info = self.client.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch=batch)["ChangeInfo"]
        except Exception as exc:  # pylint: disable=broad-except
            raise self._error(exc, "changing %s %s" % (record_name(record), rdtype))
        return {"id": info.get("Id"), "status": info.get("Status")}

    def wait(self, change, timeout):
        """Poll GetChange until INSYNC (every Route53 name server has the change). An endpoint
        that answers INSYNC at once (moto, the AWS emulator, always does) needs no poll."""
        status = change.get("status")
        deadline = self._clock() + max(0, timeout)
        delay = 1.0
        while status != "INSYNC":
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DRError("%s: change %s is still %s after %d s: it is made but not yet on every Route53 name "
                              "server; raise sync_timeout or check GetChange later"
                              % (self.label, change.get("id"), status, timeout), changed=True)
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)
            try:
                status = self.client.get_change(Id=change["id"])["ChangeInfo"]["Status"]
            except Exception as exc:  # pylint: disable=broad-except
                error = self._error(exc, "GetChange %s" % change.get("id"))
                raise DRError(error.message, changed=True)
        change["status"] = status
        return status


# ----------------------------------------------------------------------------------------------
# The switch
# ----------------------------------------------------------------------------------------------

def zone_from_params(dns_params, timeout=5.0):
    """The provider named by `dns.provider`, from the module's `dns` option shape."""
    params = dns_params or {}
    provider = params.get("provider") or "rfc2136"
    if provider == "rfc2136":
        if not HAS_DNSPYTHON:
            raise DRError("the dnspython Python library is required for provider rfc2136")
        return Rfc2136Zone(params.get("server"), params.get("zone"), port=params.get("port") or 53,
                           tsig_key_file=params.get("tsig_key_file"), tsig_key_name=params.get("tsig_key_name"),
                           tsig_secret=params.get("tsig_secret"),
                           tsig_algorithm=params.get("tsig_algorithm") or "hmac-sha256", timeout=timeout)
    if provider == "route53":
        route53 = params.get("route53") or {}
        return Route53Zone(route53.get("zone_id"), route53)
    raise DRError("DNS provider %s is not supported: use one of %s" % (provider, ", ".join(PROVIDERS)))


def _same(left, right):
    return left["values"] == right["values"] and left["ttl"] == right["ttl"]


def switch(dns_params, values, rdtype="A", ttl=None, expect=None, check_mode=False, diff=False,
           wait_for_sync=True, sync_timeout=DEFAULT_SYNC_TIMEOUT, report_change=True, timeout=5.0, zone=None):
    """Make `dns.record` hold `values` with `ttl` at `dns.provider`; return the module result.

    Idempotent: a record already at `values` and `ttl` is left alone (whatever `expect` says:
    the wanted state is there). Otherwise, with `expect`, nothing changes unless the record
    holds exactly `expect` now. Check mode reads, checks the key and says what would change.
    """
    rdtype = (rdtype or "A").upper()
    record = record_name((dns_params or {}).get("record"))
    if not record:
        raise DRError("dns.record is required: the name to switch, for example api.auditron.ai")
    wanted_values = normalize_values(rdtype, values)
    if not wanted_values:
        raise DRError("value is empty: give the address(es) or target %s %s should hold" % (record, rdtype))
    ttl = int(ttl or (dns_params or {}).get("ttl") or DEFAULT_TTL)
    expected = normalize_values(rdtype, expect) if expect else None
    zone = zone or zone_from_params(dns_params, timeout=timeout)

    before = zone.read(record, rdtype)
    after = state(wanted_values, ttl)
    result = {"changed": False, "switched": before["values"] != wanted_values, "provider": zone.provider,
              "record": record, "type": rdtype, "before": before, "after": after, "verified_from": None,
              "change": None}
    if diff:
        result["diff"] = {"before": zone_file_lines(record, rdtype, before),
                          "after": zone_file_lines(record, rdtype, after),
                          "before_header": "%s %s (%s)" % (record, rdtype, zone.provider),
                          "after_header": "%s %s (%s)" % (record, rdtype, zone.provider)}
    if _same(before, after):
        result["verified_from"] = zone.answer(record, rdtype)
        result["msg"] = "%s %s already holds %s (TTL %s) at %s: nothing to do" % (
            record, rdtype, show(wanted_values), ttl, zone.label)
        return result
    if expected is not None and before["values"] != expected:
        raise DRError("%s: %s %s holds %s, not the expected %s (someone changed it?): nothing changed"
                      % (zone.label, record, rdtype, show(before["values"]), show(expected)),
                      before=before, after=before, provider=zone.provider)
    result["changed"] = True
    what = "%s %s %s (TTL %s) -> %s (TTL %s)" % (record, rdtype, show(before["values"]), before["ttl"],
                                                 show(wanted_values), ttl)
    if check_mode:
        zone.probe(record)
        result["msg"] = "would change %s at %s" % (what, zone.label)
        return result

    change = zone.apply(record, rdtype, wanted_values, ttl, expect=expected, current=before)
    changed_at = format_time(utc_now().replace(microsecond=0))
    result["change"] = change
    if wait_for_sync:
        zone.wait(change, sync_timeout)
    if change.get("status") in ("INSYNC", "applied"):
        answered = zone.answer(record, rdtype)
    else:
        # Not on every Route53 name server yet: a DNS answer may still be the old one, so check
        # what the API holds.
        answered = dict(zone.read(record, rdtype), server=zone.where,
                        method="ListResourceRecordSets (the change is %s)" % change.get("status"))
    result["verified_from"] = answered
    if answered["values"] != wanted_values or (answered["ttl"] is not None and answered["ttl"] != ttl):
        raise DRError("%s: after the change %s answers %s %s %s (TTL %s), not %s (TTL %s): another change landed "
                      "at the same time, or the change has not reached it yet"
                      % (zone.label, answered["server"], record, rdtype, show(answered["values"]), answered["ttl"],
                         show(wanted_values), ttl), changed=True, before=before, after=after,
                      verified_from=answered, provider=zone.provider)
    result["msg"] = "changed %s at %s; read back with %s: %s" % (
        what, zone.label, answered["method"], show(answered["values"]))
    if report_change and result["switched"]:
        result["dr_report"] = {"dns_change": {"record": record, "provider": zone.provider,
                                              "from": show(before["values"]), "to": show(wanted_values),
                                              "at": changed_at}}
    return result
