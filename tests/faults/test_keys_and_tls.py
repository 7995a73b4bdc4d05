"""Keys and certificates: the wrong decryption key, a KMS that does not answer, an S3 endpoint
with an expired certificate or one from a CA nobody trusts.

Each is refused with one message naming the key, the KMS endpoint or the certificate, and no
plaintext is written: no target database, no spool file, no object anywhere.
"""

import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import logicalrestore, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def refused_restore(postgres, locations, target, encryption, spool, **options):
    """pg_restore's engine, expected to refuse: (message, target created?, spool entries)."""
    with pytest.raises(DRError) as caught:
        logicalrestore.restore(postgres, locations, target, encryption, jobs=2, spool_dir=str(spool), **options)
    return caught.value.message, faults.database_exists(postgres, target), sorted(os.listdir(str(spool)))


@pytest.mark.fault("wrong decryption key",
                   "restore refused naming the key and every copy tried; no target database, no spool file; "
                   "with the right key the same backup restores")
def test_wrong_decryption_key(fault, lab, postgres, small_db, key_file, places, tmp_path):
    acknowledged = faults.row_digests(postgres, small_db)
    made = pgdump.backup(postgres, places.locations(), faults.file_encryption(key_file), database=small_db)
    other = tmp_path / "another.key"
    generate_key_file(str(other))
    spool = tmp_path / "spool"
    spool.mkdir()
    target = "%s_wrongkey" % small_db
    try:
        args = dict(faults.module_connection(postgres), backup_id=made["backup_id"], target_db=target,
                    locations=places.params, encryption=faults.file_encryption(other), jobs=2, spool_dir=str(spool))
        result, raw = faults.ansible_module("pg_restore", args)
        assert result.get("failed") and "\n" not in result["msg"], result
        message = result["msg"]
        assert "wrong key" in message and made["backup_id"] in message, message
        assert all("at location %s" % name in message for name in ("local", "s3-us-east-1", "s3-eu-west-1")), message
        assert not faults.database_exists(postgres, target) and os.listdir(str(spool)) == []
        assert postgres["login_password"] not in raw
        fault.saw("pg_restore module refused: %s" % message[:300])
        args["encryption"] = faults.file_encryption(key_file)
        right, raw = faults.ansible_module("pg_restore", args)
        assert not right.get("failed") and right["counts_match"], right
        fault.saw("with the right key: restored, row counts match")
        # Lost: rows written before the backup that the source no longer holds, or that the
        # backup, restored with the right key, does not give back (content compared).
        lost = faults.rows_missing(postgres, acknowledged, small_db, target)
    finally:
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    fault.lost(lost)


@pytest.mark.fault("KMS unreachable",
                   "a backup is refused before anything is stored, naming the KMS endpoint and key; a restore of a "
                   "KMS-wrapped backup is refused the same way with no target database or spool file")
def test_kms_unreachable(fault, lab, postgres, small_db, places, tmp_path):
    down = faults.kms_unreachable(lab)
    endpoint = down["aws"]["endpoint_url"]
    with pytest.raises(DRError) as caught:
        pgdump.backup(postgres, places.locations(), down, database=small_db)
    message = caught.value.message
    assert "\n" not in message and endpoint in message and lab["aws"]["kms_key_alias"] in message, message
    assert "does not answer" in message, message
    stored = places.listing() if os.path.isdir(places.local_dir) else {}
    assert not any(stored.values()) and faults.local_temp_files(places.local_dir) == []
    assert all(not faults.s3_keys(lab, region, places.prefix) for region in ("us-east-1", "eu-west-1"))
    fault.saw("backup refused, nothing stored anywhere: %s" % message)

    acknowledged = faults.row_digests(postgres, small_db)
    made = pgdump.backup(postgres, places.locations(), faults.kms_encryption(lab), database=small_db)
    spool = tmp_path / "spool"
    spool.mkdir()
    target = "%s_kmsdown" % small_db
    try:
        message, created, left = refused_restore(postgres, places.locations(), target, down, spool,
                                                 backup_id=made["backup_id"])
        assert "\n" not in message and endpoint in message and "restore of %s refused" % made["backup_id"] in message
        assert not created and left == [], (created, left)
        fault.saw("restore of the KMS-wrapped %s refused, no target, no spool: %s" % (made["backup_id"], message[:240]))
        # With KMS back, the same backup restores every row the source held (content compared).
        logicalrestore.restore(postgres, places.locations(), target, faults.kms_encryption(lab),
                               backup_id=made["backup_id"], jobs=2, spool_dir=str(spool))
        lost = faults.rows_missing(postgres, acknowledged, small_db, target)
        fault.saw("with KMS answering again: %s restored, %d acknowledged rows missing" % (made["backup_id"], lost))
    finally:
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    fault.lost(lost)


TLS_EXPECTED = ("backup and restore refused naming the endpoint and the certificate problem; nothing written to "
                "it; no target database, no spool file")


@pytest.mark.parametrize("kind, problem", [
    pytest.param("expired", "certificate has expired",
                 marks=pytest.mark.fault("S3 endpoint with an expired TLS certificate", TLS_EXPECTED)),
    pytest.param("foreign", "self-signed certificate",
                 marks=pytest.mark.fault("S3 endpoint with a certificate from an unknown CA", TLS_EXPECTED)),
])
def test_untrusted_tls_certificate(fault, lab, postgres, small_db, key_file, places, tmp_path, kind, problem):
    key, cert, ca_cert = faults.expired_certificate() if kind == "expired" else faults.foreign_certificate()
    server = faults.TlsS3Server(tmp_path / "server", key, cert, ca_cert)
    encryption = faults.file_encryption(key_file)
    target = "%s_tls" % small_db
    try:
        bad = server.location("s3-untrusted", prefix="logical", ca_bundle=lab["lab"]["ca_file"])
        with pytest.raises(DRError) as caught:
            pgdump.backup(postgres, [bad], encryption, database=small_db)
        message = caught.value.message
        assert "\n" not in message and server.endpoint in message and problem in message, message
        assert server.objects() == [], server.objects()
        fault.saw("backup refused, nothing written: %s" % message)

        acknowledged = faults.row_digests(postgres, small_db)
        made = pgdump.backup(postgres, [places.location("local")], encryption, database=small_db)
        server.plant("logical", places.local_dir)
        spool = tmp_path / "spool"
        spool.mkdir()
        message, created, left = refused_restore(postgres, [location_from_params(bad, **places.TUNING)], target, encryption, spool,
                                                 backup_id=made["backup_id"])
        assert "\n" not in message and server.endpoint in message and problem in message, message
        assert not created and left == []
        fault.saw("restore of %s from it refused, no target, no spool: %s" % (made["backup_id"], message[:200]))
        # The copy on the trusted location still gives back every row the source held.
        logicalrestore.restore(postgres, [places.location("local")], target, encryption,
                               backup_id=made["backup_id"], jobs=2, spool_dir=str(spool))
        lost = faults.rows_missing(postgres, acknowledged, small_db, target)
    finally:
        server.stop()
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    fault.lost(lost)
