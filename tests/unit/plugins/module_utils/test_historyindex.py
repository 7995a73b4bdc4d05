"""historyindex: the file history's gzip JSON-lines index files, written and read back (on the
in-memory double of test_filehistory)."""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import historyindex
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

from test_filehistory import MemoryEndpoint, MemoryServer  # pylint: disable=import-error,wrong-import-order


def test_index_round_trip_and_damage_detection():
    backup = MemoryEndpoint(MemoryServer(), "backups", "files", name="s3")
    writer = historyindex.IndexWriter(backup, "i.jsonl.gz")
    for key in ("a", "b", "é"):
        writer.add({"k": key, "s": 1})
    info = writer.close()
    assert [k for k, _r in historyindex.read_index(backup, "i.jsonl.gz", info["sha256"])] == ["a", "b", "é"]
    with pytest.raises(DRError, match="sorted"):
        writer = historyindex.IndexWriter(backup, "j.jsonl.gz")
        writer.add({"k": "b"})
        writer.add({"k": "a"})
    stored = bytearray(backup.get_bytes("i.jsonl.gz"))
    stored[-12] ^= 0xFF
    backup.put("i.jsonl.gz", bytes(stored))
    with pytest.raises(DRError):
        list(historyindex.read_index(backup, "i.jsonl.gz", info["sha256"]))
