"""preflight.yml against the lab: all green, then a stopped site, then --check."""

import pytest

pytestmark = pytest.mark.lab


def table_rows(output):
    """The preflight table's data rows as (check, site, result)."""
    rows = []
    in_table = False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("CHECK") and "DETAIL" in stripped:
            in_table = True
            continue
        if in_table:
            if not stripped or stripped.startswith("TASK") or stripped.startswith("PLAY"):
                break
            if stripped.startswith("---"):
                continue
            parts = stripped.split()
            result_at = next(i for i, p in enumerate(parts) if p in ("OK", "FAILED", "SKIPPED"))
            rows.append((" ".join(parts[:result_at - 1]), parts[result_at - 1], parts[result_at]))
    return rows


def test_preflight_all_green(lab, run_playbook):
    run = run_playbook("preflight.yml")
    assert run.rc == 0, run
    rows = table_rows(run.stdout)
    checks = {(row[0], row[1]) for row in rows}
    for site in ("primary", "dr"):
        for check in ("database", "object store minio-%s" % site, "object store s3-us-east-1",
                      "object store s3-eu-west-1", "kms key", "dns rfc2136", "app health"):
            assert (check, site) in checks
    assert all(row[2] == "OK" for row in rows), rows
    assert "read, write and delete ok" in run.stdout


def test_preflight_check_mode_writes_no_probe(lab, run_playbook):
    run = run_playbook("preflight.yml", check=True)
    assert run.rc == 0, run
    assert "write probe not run" in run.stdout
    assert "read, write and delete ok" not in run.stdout


def test_route53_provider_is_checked_too(lab, run_playbook):
    dns = {"provider": "route53", "record": lab["dns"]["record"],
           "route53": {"zone_id": lab["aws"]["route53_zone_id"], "endpoint_url": lab["aws"]["endpoint"],
                       "access_key": lab["aws"]["access_key"], "secret_key": lab["aws"]["secret_key"],
                       "ca_bundle": lab["aws"]["ca_file"]}}
    run = run_playbook("preflight.yml", extra_vars={"auditron_dr_dns": dns}, args=["--limit", "dr"])
    assert run.rc == 0, run
    assert ("dns route53", "dr", "OK") in table_rows(run.stdout)


def test_wrong_tsig_secret_is_refused_by_the_server(lab, run_playbook, tmp_path):
    key_file = tmp_path / "wrong.key"
    key_file.write_text('key "%s" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n'
                        % (lab["dns"]["tsig_key_name"], "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIHNlY3JldCAzMg=="))
    dns = dict(lab["dns"], provider="rfc2136", tsig_key_file=str(key_file))
    dns.pop("tsig_key_name")
    run = run_playbook("preflight.yml", extra_vars={"auditron_dr_dns": dns}, args=["--limit", "dr"])
    assert run.rc != 0
    assert "BADSIG" in run.output or "refused" in run.output
    # the fail message is one line naming the site and the check
    fail_lines = [l for l in run.output.splitlines() if "required check(s) failed" in l]
    assert fail_lines and "dr/dns rfc2136" in fail_lines[0]


def test_preflight_against_a_stopped_site_names_what_is_down(lab, run_playbook):
    """Stop the primary's database and app (kill -9, as lab-fail does), then bring them back."""
    from lab import servers  # pylint: disable=import-outside-toplevel
    servers.fail("primary")
    try:
        run = run_playbook("preflight.yml")
    finally:
        servers.up(quiet=True)
    assert run.rc != 0
    rows = table_rows(run.stdout)
    failed = {(c, s) for c, s, r in rows if r == "FAILED"}
    assert failed == {("database", "primary"), ("object store minio-primary", "primary"),
                      ("app health", "primary")}
    fail_lines = [l for l in run.output.splitlines() if "preflight: 3 required check(s) failed" in l]
    assert fail_lines, run
    assert "connection refused" in fail_lines[0] and "does not answer" in fail_lines[0]
    # no secret from the inventory appears in the output
    for secret in (lab["sites"]["primary"]["postgres"]["password"], lab["aws"]["secret_key"],
                   lab["backup_stores"]["us-east-1"]["secret_key"]):
        assert secret not in run.output
