# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DR job metrics in the Prometheus text exposition format (version 0.0.4).

The plan's "Monitoring & Alerts" wants backup success/failure rate, size trends, duration,
time since the last successful backup, recovery-test success and achieved RTO/RPO against
target. Every scheduled job (backup_database, backup_files, verify_backups, dr_drill,
wal_archive, ...) records its run here, and the alert rules shipped in the monitoring role
read what it wrote.

Where the metrics go
--------------------
- A node_exporter textfile-collector directory: one file per job and site,
  ``auditron_dr_<job>[_<site>].prom``, so jobs never overwrite each other's metrics. The file
  is written to a hidden temporary name (not ``*.prom``, which the collector would read half
  written) and renamed over the old one, mode 0644. A lock file beside it serialises two runs
  of the same job.
- Optionally a Pushgateway: the same text is PUT (or POSTed) to
  ``<url>/metrics/job/<job>/instance/<instance>``, without the ``job`` label in the samples
  (the grouping key carries it; the Pushgateway refuses a push whose samples repeat it).

One call is one run
-------------------
A call with a ``status`` is a run: it counts in ``auditron_dr_job_runs_total`` and sets the
last-run gauges. Counters and ``last_success_timestamp_seconds`` must survive across runs,
so the previous file (or, without one, the Pushgateway's current copy) is read and carried
forward: the counter adds one, the last success is kept when this run failed. Measured
gauges (sizes, verification results, drill figures) describe the run that wrote them: a run
replaces them all, so a failed backup does not keep advertising the size of an older one.

A call without ``status`` is an observation (for example the WAL archive age): it replaces
only the metric families it writes and keeps everything else, so writing the same values
twice changes nothing.

No Ansible import beyond ``notify`` (which brings ansible's open_url for the push): tests
call this code directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import errno
import math
import os
import re
import socket
import time

from urllib.parse import quote

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # not POSIX: runs are not serialised, the rename is still atomic
    HAS_FCNTL = False

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, parse_time, write_atomically
from ansible_collections.auditron.dr.plugins.module_utils.notify import describe_url, figures_from_report, http_send

PREFIX = "auditron_dr_"
STATUSES = ("success", "failure")

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# job and site become part of a file name: keep them to characters every filesystem takes.
FILE_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

COUNTER, GAUGE = "counter", "gauge"


class MetricSpec:
    """A metric the collection defines: its type, its help text and the labels it needs."""

    def __init__(self, short_name, kind, help_text, labels=(), run_metric=False):
        self.name = PREFIX + short_name
        self.kind = kind
        self.help = help_text
        self.labels = tuple(labels)      # labels a sample must carry besides job and site
        self.run_metric = run_metric     # computed from status by the module, not given by users


# The catalogue, in the order the file lists them. docs/monitoring.md describes each one.
CATALOGUE = [
    MetricSpec("job_runs_total", COUNTER, "Runs of an auditron.dr job, by result (success or failure).",
               run_metric=True),
    MetricSpec("last_run_timestamp_seconds", GAUGE, "Unix time the job's last run finished.", run_metric=True),
    MetricSpec("last_run_success", GAUGE, "1 if the job's last run succeeded, 0 if it failed.", run_metric=True),
    MetricSpec("last_success_timestamp_seconds", GAUGE,
               "Unix time of the job's last successful run; 0 if it has not succeeded yet.", run_metric=True),
    MetricSpec("duration_seconds", GAUGE, "Wall-clock duration of the job's last run.", run_metric=True),
    MetricSpec("backup_size_bytes", GAUGE, "Size of the backup the job's last run wrote, per location and type.",
               labels=("location", "type")),
    MetricSpec("verification_success", GAUGE,
               "1 if a backup verification or restore-test check passed in the job's last run, 0 if it failed.",
               labels=("check",)),
    MetricSpec("drill_rto_seconds", GAUGE,
               "Achieved RTO (critical services) of the last drill or recovery run; +Inf if the service was "
               "not restored."),
    MetricSpec("drill_rpo_seconds", GAUGE, "Achieved RPO (database) of the last drill or recovery run."),
    MetricSpec("rto_target_seconds", GAUGE, "RTO target (critical services) the last drill was measured against."),
    MetricSpec("rpo_target_seconds", GAUGE, "RPO target (database) the last drill was measured against."),
    MetricSpec("wal_archive_age_seconds", GAUGE,
               "Age of the newest archived WAL segment when the job looked, per pgBackRest repository.",
               labels=("repo",)),
]
SPECS = dict((spec.name, spec) for spec in CATALOGUE)
EXTRA_GAUGE_HELP = "Gauge written by auditron.dr.dr_metrics."
# Labels the module sets itself or that Prometheus and the Pushgateway own.
RESERVED_LABELS = ("job", "site", "instance", "status")


def metric(short_name):
    return SPECS[PREFIX + short_name]


# ----------------------------------------------------------------------------------------------
# Names, escaping and values (https://prometheus.io/docs/instrumenting/exposition_formats/)
# ----------------------------------------------------------------------------------------------

def check_metric_name(name):
    if not isinstance(name, str) or not METRIC_NAME_RE.match(name):
        raise DRError("metric name %r is not valid: use letters, digits, _ and :, not starting with a digit" % (name,))
    return name


def check_label_name(name, metric_name=None):
    where = " of metric %s" % metric_name if metric_name else ""
    if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
        raise DRError("label name %r%s is not valid: use letters, digits and _, not starting with a digit"
                      % (name, where))
    if name.startswith("__"):
        raise DRError("label name %r%s is reserved: names starting with __ belong to Prometheus" % (name, where))
    return name


def escape_label_value(value):
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text):
    return str(text).replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(text, quotes):
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            nxt = text[index + 1]
            if nxt == "n":
                out.append("\n")
            elif nxt == "\\" or (quotes and nxt == "\""):
                out.append(nxt)
            else:   # an unknown escape stays as it was written
                out.append(char + nxt)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def format_value(value):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2 ** 53:
        return "%d" % value
    return repr(value)


def to_number(value, what):
    """A sample value from user input: numbers, numeric text, booleans (1/0), +Inf/NaN."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DRError("%s %r is not a number" % (what, value))


def label_key(labels):
    """Samples are keyed by their sorted (name, value) pairs."""
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


# ----------------------------------------------------------------------------------------------
# The model: families of samples, rendering and parsing
# ----------------------------------------------------------------------------------------------

class Family:
    def __init__(self, name, kind="untyped", help_text=""):
        self.name = name
        self.kind = kind
        self.help = help_text
        self.samples = {}    # label_key -> float

    def set(self, labels, value):
        self.samples[label_key(labels)] = float(value)

    def get(self, labels, default=None):
        return self.samples.get(label_key(labels), default)


def labels_text(key):
    """{a="1",b="2"} of a label key; empty for no labels."""
    if not key:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (k, escape_label_value(v)) for k, v in key)


def format_sample(name, key, value):
    return "%s%s %s" % (name, labels_text(key), format_value(value))


def render(families, drop_labels=()):
    """Text exposition of `families` (a list), samples in label order; `drop_labels` are left
    out of every sample (the Pushgateway's grouping key carries them)."""
    lines = []
    for family in families:
        if not family.samples:
            continue
        lines.append("# HELP %s %s" % (family.name, escape_help(family.help)))
        lines.append("# TYPE %s %s" % (family.name, family.kind))
        rows = []
        for key, value in family.samples.items():
            rows.append((tuple((k, v) for k, v in key if k not in drop_labels), value))
        for key, value in sorted(rows):
            lines.append(format_sample(family.name, key, value))
    return "\n".join(lines) + "\n" if lines else ""


_SAMPLE_NAME_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*")
_LABEL_RE = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*\"")


def _parse_labels(line, index, lineno):
    """Labels from just after '{'; returns (dict, index after '}')."""
    labels = {}
    while True:
        while index < len(line) and line[index] in " \t,":
            index += 1
        if index < len(line) and line[index] == "}":
            return labels, index + 1
        match = _LABEL_RE.match(line, index)
        if not match:
            raise DRError("line %d: bad label at column %d: %s" % (lineno, index + 1, line))
        index = match.end()
        start = index
        while index < len(line) and line[index] != "\"":
            index += 2 if line[index] == "\\" else 1
        if index >= len(line):
            raise DRError("line %d: unterminated label value: %s" % (lineno, line))
        labels[match.group(1)] = _unescape(line[start:index], quotes=True)
        index += 1


def parse_sample(line, lineno=0):
    """(name, labels dict, value) of one sample line; a timestamp after the value is ignored."""
    match = _SAMPLE_NAME_RE.match(line)
    if not match:
        raise DRError("line %d: not a sample: %s" % (lineno, line))
    name, index, labels = match.group(1), match.end(), {}
    if index < len(line) and line[index] == "{":
        labels, index = _parse_labels(line, index + 1, lineno)
    fields = line[index:].split()
    if not fields or len(fields) > 2:
        raise DRError("line %d: expected a value (and an optional timestamp): %s" % (lineno, line))
    try:
        value = float(fields[0])
    except ValueError:
        raise DRError("line %d: %r is not a sample value" % (lineno, fields[0]))
    return name, labels, value


def parse(text):
    """{sample name: Family} of an exposition text. A summary's or histogram's _sum/_count/
    _bucket samples come out under their own names: only gauges and counters matter here."""
    families = {}

    def family(name):
        if name not in families:
            families[name] = Family(name)
        return families[name]

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                family(parts[2]).help = _unescape(parts[3] if len(parts) > 3 else "", quotes=False)
            elif len(parts) >= 4 and parts[1] == "TYPE":
                family(parts[2]).kind = parts[3].strip()
            continue
        name, labels, value = parse_sample(line, lineno)
        family(name).set(labels, value)
    return families


# ----------------------------------------------------------------------------------------------
# Building a job's file
# ----------------------------------------------------------------------------------------------

def job_file_name(job, site=None):
    return "%s%s%s.prom" % (PREFIX, job, "_%s" % site if site else "")


def _check_file_part(value, what):
    if not FILE_PART_RE.match(value or ""):
        raise DRError("%s %r is not valid: use letters, digits, '_', '.' and '-' (it names the metrics file)"
                      % (what, value))
    return value


def _check_labels(labels, metric_name):
    if not isinstance(labels, dict):
        raise DRError("labels of metric %s must be a mapping, got %r" % (metric_name, labels))
    clean = {}
    for name, value in labels.items():
        check_label_name(name, metric_name)
        if name in RESERVED_LABELS:
            raise DRError("label %r of metric %s is set by the module (reserved: %s)"
                          % (name, metric_name, ", ".join(RESERVED_LABELS)))
        if value is None:
            raise DRError("label %r of metric %s has no value" % (name, metric_name))
        clean[name] = str(value)
    return clean


def full_name(name):
    name = str(name or "")
    return check_metric_name(name if name.startswith(PREFIX) else PREFIX + name)


def check_result_ok(result):
    """A verification check's result as 1/0: the timeline's vocabulary (ok/failed), booleans."""
    if isinstance(result, bool):
        return result
    text = str(result if result is not None else "").strip().lower()
    if text in ("ok", "pass", "passed", "success", "succeeded", "true", "yes", "1"):
        return True
    if text in ("fail", "failed", "failure", "error", "false", "no", "0"):
        return False
    raise DRError("check result %r is neither ok nor failed" % (result,))


def measured_gauges(size_bytes=None, labels=None, checks=None, gauges=None, figures=None):
    """The gauges a call measured, as (full name, help, labels, value) rows, validated.

    `labels` are added to each of them (for example location and type of a backup);
    `checks` is the timeline's list of {name, result}; `gauges` a list of {name, value,
    labels, help}; `figures` the timeline's key figures of a drill (key_figures()).
    """
    common = dict(labels or {})
    rows = []
    seen = set()

    def add(name, value, own_labels=None, help_text=None):
        name = full_name(name)
        spec = SPECS.get(name)
        if spec is not None and spec.run_metric:
            raise DRError("metric %s is computed by the module from status and duration_seconds" % name)
        if spec is None and name.endswith("_total"):
            raise DRError("metric %s: a gauge must not end in _total (that suffix means a counter)" % name)
        merged = dict(common)
        merged.update(own_labels or {})
        merged = _check_labels(merged, name)
        if spec is not None:
            missing = [label for label in spec.labels if not merged.get(label)]
            if missing:
                plural = "s" if len(missing) > 1 else ""
                raise DRError("metric %s needs the label%s %s" % (name, plural, " and ".join(missing)))
            help_text = spec.help
        key = (name, label_key(merged))
        if key in seen:
            raise DRError("metric %s%s is given twice" % (name, labels_text(key[1])))
        seen.add(key)
        rows.append((name, help_text or EXTRA_GAUGE_HELP, merged, to_number(value, "value of %s" % name)))

    if size_bytes is not None:
        add("backup_size_bytes", size_bytes)
    for check in checks or ():
        if not isinstance(check, dict) or not check.get("name"):
            raise DRError("every check needs a name and a result, got %r" % (check,))
        add("verification_success", 1 if check_result_ok(check.get("result", check.get("status"))) else 0,
            {"check": check["name"]})
    for gauge in gauges or ():
        if not isinstance(gauge, dict) or not gauge.get("name") or gauge.get("value") is None:
            raise DRError("every gauge needs a name and a value, got %r" % (gauge,))
        add(gauge["name"], gauge["value"], gauge.get("labels") or {}, gauge.get("help"))
    for name, value in drill_gauges(figures).items():
        add(name, value)

    return rows


def backup_size_gauges(physical=None, logical=None, files=None, files_location=None):
    """backup_size_bytes gauges (the size-anomaly alert's input) from what a backup run made:
    `physical` is a pgbackrest_backup result (one gauge per repository that made a backup:
    the bytes it stored for this backup, labelled with the type pgBackRest made), `logical` a
    pg_backup result (one gauge per location that holds the whole artifact, type logical),
    `files` a file_history sync result (one gauge for `files_location`, type mirror: the bytes
    its current/ holds after the run). Failed repositories, locations and syncs give none: the
    job's failure metrics speak for them."""
    gauges = []
    files = files or {}
    if files_location and files.get("backup_bytes") is not None and not files.get("failed") \
            and not files.get("check_mode"):
        gauges.append({"name": "backup_size_bytes", "value": files["backup_bytes"],
                       "labels": {"location": files_location, "type": "mirror"}})
    for repo in (physical or {}).get("repos") or []:
        size = repo.get("repo_delta") if repo.get("repo_delta") is not None else repo.get("repo_size")
        if repo.get("ok") and size is not None and repo.get("type"):
            gauges.append({"name": "backup_size_bytes", "value": size,
                           "labels": {"location": repo["name"], "type": repo["type"]}})
    logical = logical or {}
    if logical.get("size") is not None and not logical.get("skipped"):
        for location in logical.get("locations") or []:
            if isinstance(location, str):
                gauges.append({"name": "backup_size_bytes", "value": logical["size"],
                               "labels": {"location": location, "type": "logical"}})
    return gauges


def drill_gauges(figures):
    """drill_rto/rpo and their targets from the timeline's key figures. An RTO the report marks
    missed without a number (the service was never restored) is +Inf: greater than any target."""
    if not figures:
        return {}
    out = {}
    rto, rpo = figures.get("rto_seconds"), figures.get("rpo_seconds")
    if rto is not None:
        out["drill_rto_seconds"] = rto
    elif figures.get("rto_met") is False:
        out["drill_rto_seconds"] = float("inf")
    if rpo is not None:
        out["drill_rpo_seconds"] = rpo
    for name in ("rto_target_seconds", "rpo_target_seconds"):
        if figures.get(name) is not None:
            out[name] = figures[name]
    return out


def status_from_figures(figures):
    run_status = (figures or {}).get("run_status")
    return {"succeeded": "success", "failed": "failure"}.get(run_status)


def build_families(previous, job, site, status, at, duration_seconds, rows):
    """The families of the job's new file. `previous`: {name: Family} of the old file (or {}).

    Run metrics are keyed by {job, site} alone, so a change of a backup's location labels never
    forks a job's run history."""
    if status not in (None,) + STATUSES:
        raise DRError("status %r is not one of %s" % (status, ", ".join(STATUSES)))
    run_labels = {"job": job}
    if site:
        run_labels["site"] = site
    families = []

    def new_family(short_name):
        spec = metric(short_name)
        fam = Family(spec.name, spec.kind, spec.help)
        families.append(fam)
        return fam

    def carried(name):
        old = previous.get(name)
        return dict(old.samples) if old is not None else {}

    runs = new_family("job_runs_total")
    runs.samples.update(carried(runs.name))
    if status is not None:
        # Both results exist from the first run on, so rate() and increase() see every change.
        for result in STATUSES:
            labels = dict(run_labels, status=result)
            runs.set(labels, runs.get(labels, 0.0) + (1.0 if result == status else 0.0))

    last_run = new_family("last_run_timestamp_seconds")
    last_ok = new_family("last_run_success")
    last_success = new_family("last_success_timestamp_seconds")
    duration = new_family("duration_seconds")
    last_success.samples.update(carried(last_success.name))
    if status is None:
        for fam in (last_run, last_ok, duration):
            fam.samples.update(carried(fam.name))
    else:
        last_run.set(run_labels, at)
        last_ok.set(run_labels, 1 if status == "success" else 0)
        if status == "success":
            last_success.set(run_labels, at)
        elif last_success.get(run_labels) is None:
            last_success.set(run_labels, 0)     # never succeeded: "no recent backup" must fire
    if duration_seconds is not None:
        duration.samples.clear()
        duration.set(run_labels, to_number(duration_seconds, "duration_seconds"))

    written = {}
    for name, help_text, labels, value in rows:
        fam = written.get(name)
        if fam is None:
            fam = written[name] = Family(name, GAUGE, help_text)
        sample_labels = dict(run_labels)
        sample_labels.update(labels)
        fam.set(sample_labels, value)

    # A run replaces every measured family; an observation only those it wrote.
    measured = {}
    if status is None:
        for name, fam in previous.items():
            if name in SPECS and SPECS[name].run_metric:
                continue
            if name.startswith(PREFIX) and fam.samples and fam.kind == GAUGE:
                measured[name] = fam
    measured.update(written)
    order = [spec.name for spec in CATALOGUE if not spec.run_metric]
    for name in order + sorted(n for n in measured if n not in order):
        if name in measured:
            families.append(measured[name])
    return families


# ----------------------------------------------------------------------------------------------
# Files and the Pushgateway
# ----------------------------------------------------------------------------------------------

def read_text(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise DRError("cannot read the metrics file %s: %s" % (path, exc))


class _JobLock:
    """An exclusive flock on a hidden lock file beside the metrics file, for read-modify-write.

    The lock file is opened read-only (flock needs no write access), so a job that runs as
    another user than the one who first created the lock file can still take it."""

    def __init__(self, path):
        directory, name = os.path.split(path)
        self.path = os.path.join(directory, ".%s.lock" % name)
        self.fd = None

    def acquire(self):
        if not HAS_FCNTL:
            return
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (IOError, OSError) as exc:
            self.release()
            raise DRError("cannot lock %s: %s" % (self.path, exc))

    def release(self):
        if self.fd is not None:
            os.close(self.fd)    # closing the descriptor releases the flock
            self.fd = None


def grouping_path(job, instance):
    """/metrics/job/<job>/instance/<instance>, with the Pushgateway's base64 form for values a
    URL path cannot carry (a '/', or the empty string)."""
    parts = []
    for name, value in (("job", job), ("instance", instance)):
        value = str(value)
        if value == "" or "/" in value:
            encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="
            parts.append("%s@base64/%s" % (name, encoded))
        else:
            parts.append("%s/%s" % (name, quote(value, safe="")))
    return "/metrics/" + "/".join(parts)


def previous_from_pushgateway(families, job, instance):
    """The group's samples from a Pushgateway's /metrics, with instance dropped and job kept, as
    they are in a textfile."""
    out = {}
    for name, fam in families.items():
        if not name.startswith(PREFIX):
            continue
        kept = Family(name, fam.kind, fam.help)
        for key, value in fam.samples.items():
            labels = dict(key)
            if labels.get("job") == job and labels.get("instance", "") == instance:
                labels.pop("instance", None)
                kept.set(labels, value)
        if kept.samples:
            out[name] = kept
    return out


def _run_time(timestamp):
    if timestamp in (None, ""):
        return time.time()
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return float(timestamp)
    try:
        return float(str(timestamp))
    except ValueError:
        return (parse_time(timestamp, what="timestamp") - parse_time("1970-01-01T00:00:00Z")).total_seconds()


def _snapshot(families):
    """What a set of families says, for comparing: {name: {label key: value}} of the non-empty ones."""
    families = families.values() if isinstance(families, dict) else families
    return dict((f.name, dict(f.samples)) for f in families if f.samples)


def _pushgateway_request(pushgateway, url, method, text=None, attempts=None):
    headers = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"} if text is not None else {}
    answer = http_send(url, data=text.encode("utf-8") if text is not None else None, method=method, headers=headers,
                       timeout=pushgateway.get("timeout") or 10, ca_bundle=pushgateway.get("ca_bundle"),
                       validate_certs=pushgateway.get("validate_certs", True),
                       username=pushgateway.get("username"), password=pushgateway.get("password"),
                       attempts=attempts or pushgateway.get("attempts") or 3,
                       backoff_seconds=pushgateway.get("backoff_seconds", 1.0), what="Pushgateway")
    return answer["body"]


def _gateway_group(pushgateway, job, instance, warnings):
    """The group's current samples on the Pushgateway, or None (and a warning) if unreadable."""
    try:
        body = _pushgateway_request(pushgateway, pushgateway["url"].rstrip("/") + "/metrics", "GET", attempts=1)
        return previous_from_pushgateway(parse(body.decode("utf-8", "replace")), job, instance)
    except DRError as exc:
        warnings.append("could not read job %s's current metrics from the Pushgateway: %s" % (job, exc))
        return None


def write_job_metrics(job, site=None, status=None, timestamp=None, duration_seconds=None, size_bytes=None,
                      labels=None, checks=None, gauges=None, report_file=None, figures=None, textfile_dir=None,
                      pushgateway=None, check_mode=False, diff=False):
    """Record one run (or observation) of `job`; see the module docstring. Returns the module result.

    pushgateway: None, or {url, instance, method, username, password, ca_bundle, validate_certs,
    timeout, attempts, backoff_seconds, required}. The previous state comes from the textfile
    when there is one, else from the Pushgateway's copy of the group. Nothing is written, and
    nothing pushed, when the new metrics equal what is already there.
    """
    pushing = bool(pushgateway and pushgateway.get("url"))
    if not textfile_dir and not pushing:
        raise DRError("nowhere to write: give textfile_dir, pushgateway_url or both")
    if report_file:
        from_report = figures_from_report(report_file)
        from_report.update(figures or {})
        figures = from_report
    site = site or (figures or {}).get("site")
    _check_file_part(job, "job")
    if site:
        _check_file_part(site, "site")
    if status is None and figures:
        status = status_from_figures(figures)
    if duration_seconds is None and figures and status is not None:
        duration_seconds = figures.get("run_duration_seconds")
    rows = measured_gauges(size_bytes=size_bytes, labels=labels, checks=checks, gauges=gauges, figures=figures)
    at = _run_time(timestamp)
    warnings = []
    result = {"changed": False, "job": job, "site": site, "status": status, "path": None, "pushed": False}

    path, lock = None, None
    if textfile_dir:
        directory = os.path.abspath(os.path.expanduser(textfile_dir))
        if not os.path.isdir(directory):
            raise DRError("textfile_dir %s does not exist: apply the auditron.dr.monitoring role first, or fix the "
                          "path the node_exporter textfile collector reads" % directory)
        path = result["path"] = os.path.join(directory, job_file_name(job, site))
        if not check_mode:
            lock = _JobLock(path)
    try:
        if lock is not None:
            lock.acquire()
        before = read_text(path) if path else None
        instance = gateway = None
        if pushing:
            instance = pushgateway.get("instance") or site or socket.gethostname()
            gateway = _gateway_group(pushgateway, job, instance, warnings)
        previous = {}
        if before:
            try:
                previous = parse(before)
            except DRError as exc:
                warnings.append("%s is not a valid metrics file (%s): its counters start again from zero"
                                % (path, exc))
        elif not path and gateway:
            previous = gateway
        families = build_families(previous, job, site, status, at, duration_seconds, rows)
        text = render(families)
        write_file = path is not None and text != (before or "")
        push = pushing and (gateway is None or _snapshot(gateway) != _snapshot(families))
        result["changed"] = write_file or push
        if write_file and not check_mode:
            try:
                write_atomically(path, text)
            except (IOError, OSError) as exc:
                raise DRError("cannot write the metrics file %s: %s" % (path, exc))
        if pushing:
            url = pushgateway["url"].rstrip("/") + grouping_path(job, instance)
            result["push_url"] = describe_url(pushgateway["url"]) + grouping_path(job, instance)
            if push and not check_mode:
                try:
                    _pushgateway_request(pushgateway, url, (pushgateway.get("method") or "put").upper(),
                                         render(families, drop_labels=("job",)))
                    result["pushed"] = True
                except DRError as exc:
                    if pushgateway.get("required"):
                        raise DRError("metrics of job %s not pushed: %s" % (job, exc), path=path, text=text)
                    warnings.append("metrics of job %s not pushed (the run is not failed for it): %s" % (job, exc))
    finally:
        if lock is not None:
            lock.release()

    run_labels = {"job": job}
    if site:
        run_labels["site"] = site
    runs = [f for f in families if f.name == metric("job_runs_total").name][0]
    result.update(text=text, warnings=warnings, samples=sum(len(f.samples) for f in families),
                  job_runs=dict((s, int(runs.get(dict(run_labels, status=s), 0))) for s in STATUSES))
    if diff and path:
        result["diff"] = {"before": before or "", "after": text, "before_header": path, "after_header": path}
    return result


def samples_of(text):
    """[(name, labels dict, value)] of an exposition text, sorted: what tests and promtool need."""
    out = []
    for name, fam in sorted(parse(text).items()):
        for key, value in sorted(fam.samples.items()):
            out.append((name, dict(key), value))
    return out
