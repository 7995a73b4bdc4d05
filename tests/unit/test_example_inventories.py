"""The example inventories (inventories/primary, inventories/dr) work together.

Failover, failback and setup_standby take both: `-i inventories/primary -i inventories/dr`.
Variables under an inventory's group_vars/all apply to every host of every inventory given, so
site values kept there would silently take the last inventory's value on both hosts. Each site's
values live in the group of its site (group_vars/auditron_primary, group_vars/auditron_dr):
whatever the order, each host keeps its own site's values, and has the variables the cross-site
playbooks read (auditron_dr_dns_target, auditron_dr_state_dir, auditron_dr_replication).

The tests read `ansible-inventory --list`, which does not template: vault references stay
strings. AUDITRON_EXAMPLE_INVENTORIES points them at another directory holding primary/ and dr/
(a copy of an older layout, for instance).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN

SITES = {
    "primary": {"host": "db1.primary.auditron.internal", "group": "auditron_primary",
                "object_store": "minio-primary", "app_url": "https://api.auditron.ai"},
    "dr": {"host": "db1.dr.auditron.internal", "group": "auditron_dr",
           "object_store": "minio-dr", "app_url": "https://dr.api.auditron.ai"},
}
CROSS_SITE_VARIABLES = ("auditron_dr_dns_target", "auditron_dr_state_dir", "auditron_dr_replication")
ORDERS = [("primary", "dr"), ("dr", "primary")]


def example_inventories_root():
    """The directory holding the example inventories primary/ and dr/."""
    return Path(os.environ.get("AUDITRON_EXAMPLE_INVENTORIES") or REPO / "inventories")


def inventory_hostvars(*sites):
    """Every host's variables, as ansible-inventory sees them with these inventories in this order."""
    command = [str(VENV_BIN / "ansible-inventory"), "--list"]
    for site in sites:
        command += ["-i", str(example_inventories_root() / site)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(command, cwd=str(REPO), env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, "%s failed:\n%s" % (" ".join(command), result.stderr)
    assert "[WARNING]" not in result.stderr, result.stderr
    return json.loads(result.stdout)["_meta"]["hostvars"]


@pytest.fixture(scope="module", name="alone")
def fixture_alone():
    """Each site's host's variables with its own inventory only."""
    return {site: inventory_hostvars(site)[spec["host"]] for site, spec in SITES.items()}


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
def test_each_host_keeps_its_own_site_values_with_both_inventories(order):
    hostvars = inventory_hostvars(*order)
    assert set(hostvars) == {spec["host"] for spec in SITES.values()}
    for site, spec in SITES.items():
        host = hostvars[spec["host"]]
        assert host["auditron_dr_site"] == site
        assert host["auditron_dr_object_store"]["name"] == spec["object_store"]
        assert host["auditron_dr_app"]["url"] == spec["app_url"]
    primary, dr = (hostvars[SITES[site]["host"]] for site in ("primary", "dr"))
    assert primary["auditron_dr_dns_target"] != dr["auditron_dr_dns_target"], (
        "both hosts point the API's name at the same address")


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
def test_both_inventories_give_each_host_what_its_own_inventory_gives(order, alone):
    hostvars = inventory_hostvars(*order)
    for site, spec in SITES.items():
        assert hostvars[spec["host"]] == alone[site], (
            "%s: with -i %s its variables differ from those of its own inventory" % (spec["host"], " -i ".join(order)))


def test_site_values_are_not_in_group_vars_all():
    for site in SITES:
        leftovers = sorted(str(path.relative_to(example_inventories_root()))
                           for path in (example_inventories_root() / site).glob("group_vars/all*"))
        assert not leftovers, "group_vars/all applies to both sites' hosts when both inventories are given"


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
def test_each_host_defines_the_cross_site_variables(order):
    hostvars = inventory_hostvars(*order)
    for spec in SITES.values():
        host = hostvars[spec["host"]]
        missing = [name for name in CROSS_SITE_VARIABLES if name not in host]
        assert not missing, "%s lacks %s" % (spec["host"], ", ".join(missing))
        assert host["auditron_dr_dns_target"]
        assert host["auditron_dr_state_dir"].startswith("/")
        assert {"user", "password"} <= set(host["auditron_dr_replication"])
        assert host["auditron_dr_replication"]["user"]
    # DR's standby must reach the primary by an address it can route to, not the primary's own
    # view of itself (127.0.0.1 in the primary's auditron_dr_postgres).
    dr = hostvars[SITES["dr"]["host"]]["auditron_dr_replication"]
    assert dr.get("primary_host") not in (None, "", "127.0.0.1", "localhost"), dr


@pytest.mark.parametrize("site", sorted(SITES))
def test_secrets_are_vault_references(site, alone):
    host = alone[site]
    secrets = {
        "auditron_dr_postgres.password": host["auditron_dr_postgres"]["password"],
        "auditron_dr_replication.password": host["auditron_dr_replication"]["password"],
        "auditron_dr_object_store.access_key": host["auditron_dr_object_store"]["access_key"],
        "auditron_dr_object_store.secret_key": host["auditron_dr_object_store"]["secret_key"],
        "auditron_dr_app.token": host["auditron_dr_app"]["token"],
    }
    literal = {name: value for name, value in secrets.items() if not value.startswith("{{ vault_")}
    assert not literal, "not read from Ansible Vault: %s" % ", ".join(sorted(literal))
