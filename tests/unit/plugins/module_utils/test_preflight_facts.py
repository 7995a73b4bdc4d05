"""Preflight's facts (module_utils/preflight): the role, the mode and each store's result come as
data, so that no playbook reads them out of the rows' text."""

from ansible_collections.auditron.dr.plugins.module_utils import preflight


def _database(role):
    def check_postgres(site, params, expected_role=None):
        if role is None:
            return preflight.row("database", site, False, "connection refused"), None
        return preflight.row("database", site, True, "PostgreSQL 15.14, %s, 105 MB, system id 1" % role), role
    return check_postgres


def _stores(answering):
    def check_location(site, params, write, label="object store"):
        ok = params["name"] in answering
        return preflight.row("%s %s" % (label, params["name"]), site, ok, "probe " + ("ok" if ok else "refused"))
    return check_location


def _run(monkeypatch, role, answering, **kwargs):
    monkeypatch.setattr(preflight, "check_postgres", _database(role))
    monkeypatch.setattr(preflight, "check_location", _stores(answering))
    locations = [{"name": "minio-dr"}, {"name": "s3-us-east-1"}, {"name": "s3-eu-west-1", "role": "backup"}]
    return preflight.run("dr", postgres={"login_host": "db"}, locations=locations, **kwargs)


def test_a_standby_database_means_warm(monkeypatch):
    rows, found = _run(monkeypatch, "standby", {"minio-dr", "s3-us-east-1", "s3-eu-west-1"})
    assert found["database_role"] == "standby" and found["mode"] == "warm"
    assert rows[0]["name"] == "database" and rows[0]["result"] == "ok"


def test_a_primary_or_a_database_that_does_not_answer_means_cold(monkeypatch):
    assert _run(monkeypatch, "primary", set())[1]["mode"] == "cold"
    rows, found = _run(monkeypatch, None, set())
    assert found["database_role"] is None and found["mode"] == "cold"
    assert rows[0]["result"] == "failed"


def test_each_store_has_its_name_role_and_result(monkeypatch):
    found = _run(monkeypatch, "primary", {"s3-eu-west-1"})[1]
    assert found["stores"] == [
        {"name": "minio-dr", "role": "object store", "result": "failed"},
        {"name": "s3-us-east-1", "role": "object store", "result": "failed"},
        {"name": "s3-eu-west-1", "role": "backup", "result": "ok"},
    ]


def test_a_store_named_in_optional_checks_is_not_required(monkeypatch):
    rows = _run(monkeypatch, "primary", set(), optional_checks=["database", "s3-us-east-1"])[0]
    required = {row["name"]: row["required"] for row in rows}
    assert required == {"database": False, "object store minio-dr": True, "object store s3-us-east-1": False,
                        "backup s3-eu-west-1": True}
    assert [row["name"] for row in preflight.failed_required(rows)] == ["object store minio-dr",
                                                                        "backup s3-eu-west-1"]
