# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Notifications of a DR run: a JSON webhook, or a Slack-compatible message.

A scenario playbook tells people when it starts, when it succeeds and when it fails, with
what they need to act: scenario, site, status, achieved RTO/RPO against target when known,
where the report is, and for a failure the phase and message. The generic format is one flat
JSON object for any webhook receiver (Alertmanager-style tooling, chat bridges, ticketing);
the Slack format is what Slack, Mattermost and Rocket.Chat incoming webhooks take (`text` for
the notification line, `blocks` for the message).

A notification must never be the reason a recovery stops: delivery is retried with backoff,
and a failure is reported to the caller as `delivered: false` with a warning, unless the
caller says the notification is required.

The webhook URL is a secret (Slack's carries its token): no message or result here contains
more of it than its scheme and host.

This module also holds what dr_metrics shares with it: `http_send` (ansible's open_url with
retries) and `figures_from_report` (the timeline's key figures from a report.json).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_duration, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.retry import backoff_delay
from ansible_collections.auditron.dr.plugins.module_utils.timeline import key_figures

SCHEMA = "auditron.dr.notification/1"
STATUSES = ("started", "succeeded", "failed")
FORMATS = ("json", "slack")
# Answers worth another attempt: the receiver is overloaded or restarting, not refusing us.
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
MAX_RETRY_AFTER_SECONDS = 60.0
_SLACK_HEADER_LIMIT = 150
_SLACK_TEXT_LIMIT = 2900


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------

def describe_url(url):
    """scheme://host[:port] of a URL: enough to say where, without a path or userinfo that may
    hold a token."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if parts.port:
            host = "%s:%d" % (host, parts.port)
    except ValueError:
        return "(unparsable URL)"
    return "%s://%s" % (parts.scheme or "?", host or "?")


def _retry_after(headers):
    try:
        value = float((headers or {}).get("Retry-After"))
    except (TypeError, ValueError):
        return None
    return max(0.0, min(value, MAX_RETRY_AFTER_SECONDS))


def http_send(url, data=None, method="POST", headers=None, timeout=10, ca_bundle=None, validate_certs=True,
              username=None, password=None, attempts=3, backoff_seconds=2.0, what="webhook", sleep=time.sleep):
    """One HTTP request with ansible's open_url, retried on transport errors and on 408, 425,
    429 and 5xx with exponential backoff (backoff_seconds, then twice that, ...; a Retry-After
    header wins, up to a minute). Other answers are final: a 4xx will not improve.

    Returns {status, body, attempts}; raises DRError naming `what` and the URL's host only.
    """
    # Imported here: ansible.module_utils.urls costs about 0.2 s of CPU to load, and dr_metrics,
    # which shares this file, sends nothing in most runs (it writes the textfile collector's file).
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel
    attempts = max(1, int(attempts or 1))
    target = "%s %s" % (what, describe_url(url))
    last_error = last_status = None
    for attempt in range(1, attempts + 1):
        wait = backoff_delay(attempt, base=backoff_seconds, cap=None, jitter=False)
        try:
            response = open_url(url, data=data, headers=headers or {}, method=method, timeout=timeout,
                                validate_certs=validate_certs, ca_path=ca_bundle, url_username=username,
                                url_password=password, force_basic_auth=bool(username), follow_redirects="safe")
            try:
                return {"status": response.getcode(), "body": response.read(), "attempts": attempt}
            finally:
                response.close()
        except HTTPError as exc:
            body = b""
            try:
                body = exc.read() or b""
            except (IOError, OSError):
                pass
            detail = body.decode("utf-8", "replace").strip().splitlines()
            last_status = exc.code
            last_error = "answered HTTP %s%s" % (exc.code, (": %s" % detail[0][:200]) if detail else "")
            if exc.code not in RETRY_STATUSES:
                raise DRError("%s %s" % (target, last_error), status=exc.code, attempts=attempt)
            retry_after = _retry_after(getattr(exc, "headers", None))
            if retry_after is not None:
                wait = retry_after
        except URLError as exc:
            last_error = "does not answer: %s" % first_line(getattr(exc, "reason", exc))
        except ValueError as exc:   # not a URL open_url can use: no retry will help
            raise DRError("%s: %s" % (target, first_line(exc)), attempts=attempt)
        except (IOError, OSError) as exc:   # timeouts, resets
            last_error = "does not answer: %s" % first_line(exc)
        if attempt < attempts:
            sleep(wait)
    raise DRError("%s %s (%d attempt%s)" % (target, last_error, attempts, "" if attempts == 1 else "s"),
                  status=last_status, attempts=attempts)


# ----------------------------------------------------------------------------------------------
# Report figures
# ----------------------------------------------------------------------------------------------

def load_report(path):
    """report.json written by the dr_timeline callback; `path` may be the report directory."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        path = os.path.join(path, "report.json")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            report = json.load(handle)
    except (IOError, OSError) as exc:
        raise DRError("cannot read the DR report %s: %s" % (path, exc))
    except ValueError as exc:
        raise DRError("the DR report %s is not JSON: %s" % (path, exc))
    if not isinstance(report, dict) or "rto" not in report or "rpo" not in report:
        raise DRError("%s is not a report of the dr_timeline callback (no rto/rpo)" % path)
    return report


def figures_from_report(path):
    """The timeline's key figures of a report, plus what a notification or a metric also wants:
    the run's duration, the failure and the scenario/site/playbook it names."""
    report = load_report(path)
    figures = key_figures(report)
    if not figures.get("report_path"):
        figures["report_path"] = os.path.abspath(os.path.expanduser(str(path)))
    figures["run_duration_seconds"] = (report.get("run") or {}).get("duration_seconds")
    failure = report.get("failure") or {}
    figures["failed_phase"] = failure.get("phase_title") or failure.get("phase")
    figures["failed_task"] = failure.get("task")
    figures["failure_message"] = failure.get("message")
    for key in ("scenario", "site", "playbook"):
        figures[key] = report.get(key)
    return figures


# ----------------------------------------------------------------------------------------------
# Events and payloads
# ----------------------------------------------------------------------------------------------

def build_event(status, scenario=None, site=None, playbook=None, phase=None, message=None, report_path=None,
                figures=None, extra=None, at=None):
    """The notification as plain data; explicit arguments win over figures from a report."""
    if status not in STATUSES:
        raise DRError("status %r is not one of %s" % (status, ", ".join(STATUSES)))
    figures = dict(figures or {})

    def pick(value, key):
        return value if value not in (None, "") else figures.get(key)

    event = {
        "schema": SCHEMA,
        "status": status,
        "scenario": pick(scenario, "scenario"),
        "site": pick(site, "site"),
        "playbook": pick(playbook, "playbook"),
        "at": format_time(at or utc_now()),
        "rto_seconds": figures.get("rto_seconds"),
        "rto_target_seconds": figures.get("rto_target_seconds"),
        "rto_met": figures.get("rto_met"),
        "rpo_seconds": figures.get("rpo_seconds"),
        "rpo_target_seconds": figures.get("rpo_target_seconds"),
        "rpo_met": figures.get("rpo_met"),
        "recovery_point": figures.get("recovery_point"),
        "backup_used": figures.get("backup_used"),
        "report_path": pick(report_path, "report_path"),
        "failed_phase": None,
        "failure_message": None,
    }
    if status == "failed":
        event["failed_phase"] = pick(phase, "failed_phase")
        event["failure_message"] = pick(message, "failure_message")
    elif message:
        event["message"] = message
    if extra:
        for key, value in extra.items():
            if key in event:
                raise DRError("extra field %r would replace a field of the notification" % key)
            event[key] = value
    event["text"] = headline(event)
    return event


def _objective_text(kind, event):
    achieved, target, met = (event.get("%s_seconds" % kind), event.get("%s_target_seconds" % kind),
                             event.get("%s_met" % kind))
    if achieved is None and met is None:
        return None
    words = "unknown" if achieved is None else human_duration(achieved)
    if target is not None:
        verdict = "unknown" if met is None else ("met" if met else "MISSED")
        words += " (target %s, %s)" % (human_duration(target), verdict)
    return "%s %s" % (kind.upper(), words)


def headline(event):
    """One line, readable in a phone's notification: what, where, how it went."""
    what = event.get("scenario") or event.get("playbook") or "DR run"
    where = " at %s" % event["site"] if event.get("site") else ""
    if event["status"] == "started":
        line = "DR %s%s started" % (what, where)
    elif event["status"] == "succeeded":
        line = "DR %s%s succeeded" % (what, where)
    else:
        line = "DR %s%s FAILED" % (what, where)
        if event.get("failed_phase"):
            line += " in %s" % event["failed_phase"]
        if event.get("failure_message"):
            line += ": %s" % event["failure_message"]
    objectives = [t for t in (_objective_text("rto", event), _objective_text("rpo", event)) if t]
    if objectives:
        line += " — " + ", ".join(objectives)
    return line


_EMOJI = {"started": ":arrow_forward:", "succeeded": ":white_check_mark:", "failed": ":rotating_light:"}


def _clip(text, limit):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def slack_payload(event):
    """`text` (the notification line and the fallback) and `blocks` (header, fields, context)."""
    what = event.get("scenario") or event.get("playbook") or "DR run"
    title = "%s DR %s: %s" % (_EMOJI[event["status"]], what, event["status"].upper())
    fields = [("Status", event["status"]), ("Site", event.get("site")), ("Scenario", event.get("scenario")),
              ("Playbook", event.get("playbook")),
              ("RTO", _objective_text("rto", event)), ("RPO", _objective_text("rpo", event)),
              ("Recovery point", event.get("recovery_point")), ("Backup used", event.get("backup_used")),
              ("Failed phase", event.get("failed_phase")), ("Report", event.get("report_path"))]
    shown = [{"type": "mrkdwn", "text": _clip("*%s*\n%s" % (name, value), 1900)}
             for name, value in fields if value not in (None, "")][:10]   # Slack takes at most 10 fields
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": _clip(title, _SLACK_HEADER_LIMIT),
                                          "emoji": True}},
              {"type": "section", "text": {"type": "mrkdwn", "text": _clip(event["text"], _SLACK_TEXT_LIMIT)},
               "fields": shown}]
    if event.get("failure_message"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(
            "*Failure*\n```%s```" % event["failure_message"], _SLACK_TEXT_LIMIT)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "auditron.dr · %s" % event["at"]}]})
    return {"text": event["text"], "blocks": blocks}


def payload(event, fmt):
    if fmt == "json":
        return dict(event)
    if fmt == "slack":
        return slack_payload(event)
    raise DRError("format %r is not one of %s" % (fmt, ", ".join(FORMATS)))


def notify(url, event, fmt="json", headers=None, attempts=3, backoff_seconds=2.0, timeout=10, ca_bundle=None,
           validate_certs=True, required=False, check_mode=False, sleep=time.sleep):
    """Send one notification; the module result. Not delivered and not required: a warning."""
    if not url:
        raise DRError("no webhook url given")
    body = payload(event, fmt)
    target = describe_url(url)
    record = {"status": event["status"], "format": fmt, "target": target, "at": event["at"], "delivered": False}
    # The record goes into the run's DR report: who was told what, and whether it arrived.
    result = {"changed": False, "delivered": False, "attempts": 0, "payload": body, "target": target,
              "warnings": [], "dr_report": {"notifications": [record]}}
    if check_mode:
        record["note"] = "check mode: not sent"
        result["changed"] = True   # it would send
        return result
    send_headers = {"Content-Type": "application/json"}
    send_headers.update(headers or {})
    try:
        answer = http_send(url, data=json.dumps(body, default=str).encode("utf-8"), method="POST",
                           headers=send_headers, timeout=timeout, ca_bundle=ca_bundle, validate_certs=validate_certs,
                           attempts=attempts, backoff_seconds=backoff_seconds, sleep=sleep)
    except DRError as exc:
        record["error"] = exc.message
        result.update(attempts=exc.details.get("attempts", attempts), error=exc.message,
                      http_status=exc.details.get("status"))
        if required:
            raise DRError("notification %s not delivered: %s" % (event["status"], exc.message),
                          **dict((k, v) for k, v in result.items() if k != "warnings"))
        result["warnings"].append("notification %s not delivered (the DR run goes on): %s"
                                  % (event["status"], exc.message))
        return result
    record.update(delivered=True, http_status=answer["status"])
    result.update(changed=True, delivered=True, attempts=answer["attempts"], http_status=answer["status"])
    return result
