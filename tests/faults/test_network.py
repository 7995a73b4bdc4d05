"""An S3 endpoint that stops in the middle of a transfer (tests/helpers/faults.py, FaultProxy:
the real server behind a proxy that cuts every connection and refuses new ones).

Uploads: the location is retried with backoff, then dropped with a message naming the endpoint;
the other locations get a complete copy. Downloads: the copy is retried with backoff, then the
restore falls back to the next location that holds a valid copy.
"""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore, pgdump
from tests.faults.conftest import scratch_counts
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def spacing(delays):
    return ", ".join("%.1f" % delay for delay in delays)


def misnamed(message):
    """Why a message about an endpoint that stopped answering points at the wrong thing, or None.

    The proxy accepts each connection and closes it at once, as a load balancer with no live
    server behind it does: the TLS handshake meets EOF. That is the endpoint gone, not a
    certificate nobody trusts; a message saying the latter sends the operator after certificates.
    """
    if "not trusted" in message or "certificate" in message.lower():
        return "blames the TLS certificate for a connection the endpoint closed: %s" % message
    return None


@pytest.mark.fault("S3 endpoint stops mid-upload",
                   "the upload is retried with backoff, then that location fails naming the endpoint; the "
                   "other locations hold a complete, valid copy; a restore falls back to one; a re-run completes")
def test_s3_endpoint_stops_in_the_middle_of_an_upload(fault, lab, postgres, scratch_db, key_file, places):
    encryption = faults.file_encryption(key_file)
    counts = scratch_counts(postgres)
    proxy = faults.s3_proxy(lab, stop_after_upload_bytes=7 << 20)
    through = proxy.endpoint
    try:
        made = pgdump.backup(postgres, places.locations_via(proxy), encryption, database=scratch_db)
        retries = proxy.attempts_after_stop()
        assert proxy.stopped_at is not None, "the upload never reached the cut (%d bytes sent)" % proxy.uploaded
        assert made["locations"] == ["local", "s3-eu-west-1"], made
        message = made["failed_locations"]["s3-us-east-1"]
        assert "\n" not in message and through in message, message
        assert len(retries) >= 2, "no retry after the endpoint stopped: %s" % retries
        fault.saw("cut after %.1f MiB up; %d further attempts at +%s s (botocore's jittered backoff, upload "
                  "then abort), then: %s" % (proxy.uploaded / 1048576.0, len(retries), spacing(retries), message))
        backup_id = made["backup_id"]

        cat = catalog.Catalog.load(places.locations(), series=scratch_db)
        entry = cat.entry(backup_id)
        states = dict((name, state["status"]) for name, state in entry.locations.items())
        assert entry.valid and states == {"local": "present", "s3-us-east-1": "missing", "s3-eu-west-1": "present"}
        assert entry.manifest["artifacts"][0]["locations"]["s3-us-east-1"]["present"] is False
        assert not [key for key in faults.s3_keys(lab, "us-east-1", places.prefix) if backup_id in key]

        # The region that missed it comes first in the restore order: the restore passes over it.
        restored = logicalrestore.restore(postgres, places.locations(("s3-us-east-1", "s3-eu-west-1", "local")),
                                          "%s_upcut" % scratch_db, encryption, latest=True, series=scratch_db, jobs=2)
        assert restored["backup_id"] == backup_id and restored["location"] == "s3-eu-west-1"
        assert restored["counts_match"], restored["row_counts"]
        fault.saw("restore used %s from s3-eu-west-1 (%s)" % (backup_id, restored["attempts"][0]["detail"]))
        leftover = faults.unfinished_uploads(lab, "us-east-1", places.prefix)
        fault.saw("unfinished uploads left in s3-us-east-1 (the abort could not reach it): %d" % len(leftover))

        proxy.resume()
        again = pgdump.backup(postgres, places.locations_via(proxy), encryption, database=scratch_db)
    finally:
        proxy.close()
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s_upcut" WITH (FORCE)' % scratch_db)
    assert again["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"], again["failed_locations"]
    fault.saw("re-run with the endpoint back: %s in all 3 locations" % again["backup_id"])
    lost = sum(1 for name, count in scratch_counts(postgres).items() if counts[name] != count)
    fault.lost(lost + (0 if restored["counts_match"] else 1))
    assert misnamed(message) is None, misnamed(message)


@pytest.mark.fault("S3 endpoint stops mid-download",
                   "the download is retried with backoff, then that copy is refused naming the location and "
                   "endpoint; the restore falls back to another location with a valid copy; no plaintext left")
def test_s3_endpoint_stops_in_the_middle_of_a_download(fault, lab, postgres, scratch_db, key_file, places, tmp_path):
    encryption = faults.file_encryption(key_file)
    made = pgdump.backup(postgres, places.locations(), encryption, database=scratch_db)
    proxy = faults.s3_proxy(lab, stop_after_download_bytes=3 << 20)
    through = proxy.endpoint
    spool = tmp_path / "spool"
    spool.mkdir()
    target = "%s_downcut" % scratch_db
    try:
        restored = logicalrestore.restore(postgres, [places.location("s3-us-east-1", endpoint_url=through),
                                                     places.location("s3-eu-west-1"), places.location("local")],
                                          target, encryption, latest=True, series=scratch_db, jobs=2, spool_dir=str(spool))
        retries = proxy.attempts_after_stop()
        assert restored["backup_id"] == made["backup_id"] and restored["location"] == "s3-eu-west-1", restored
        assert restored["counts_match"], restored["row_counts"]
        failed = [attempt for attempt in restored["attempts"] if not attempt["ok"]]
        assert [attempt["location"] for attempt in failed] == ["s3-us-east-1"], restored["attempts"]
        detail = failed[0]["detail"]
        assert "\n" not in detail and "s3-us-east-1" in detail, detail
        assert len(retries) >= 2, "no retry after the endpoint stopped: %s" % retries
        fault.saw("cut after %.1f MiB down; %d further attempts at +%s s; copy refused: %s" % (
            proxy.downloaded / 1048576.0, len(retries), spacing(retries), detail))
        fault.saw("restored %s from s3-eu-west-1, row counts match the manifest" % made["backup_id"])
        assert list(spool.iterdir()) == [], "plaintext left in the spool: %s" % list(spool.iterdir())
        names_endpoint = through in detail or "localhost:%d" % proxy.port in detail
    finally:
        proxy.close()
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    fault.lost(0 if restored["counts_match"] else 1)
    assert names_endpoint, "the refusal names the location but not its endpoint %s: %s" % (through, detail)
    assert misnamed(detail) is None, misnamed(detail)
