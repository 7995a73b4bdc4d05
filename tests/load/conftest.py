"""The load suite (tests/load): the collection under sustained load, against the lab's real servers.

- test_wal_archiving.py: pgbench writing flat out on the lab's primary while pgBackRest archives
  WAL to its three repositories; archive lag must stay under archive_timeout, and a PITR to the
  end (a scratch cluster restored by the pg_recovery role) must hold every committed pgbench
  transaction.
- test_mirror_scale.py: the object mirror at many small objects (by default 20,000; the issue's
  100,000 with AUDITRON_LOAD_OBJECTS=100000): it completes and its memory stays flat.

Defaults are sized for a loaded 2-core machine (a few minutes for the suite); the issue's full
figures:

    AUDITRON_LOAD_SECONDS=300 AUDITRON_LOAD_OBJECTS=100000 .venv/bin/pytest tests/load -q

Every test here is marked `load` (and `lab`, `slow`): `-m "not load"` leaves them out.
"""

import os

import pytest

from tests.helpers import faults

DEFAULT_SECONDS = 75
DEFAULT_OBJECTS = 20000


def env_int(name, default, minimum=1):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise pytest.UsageError("%s=%r is not a whole number" % (name, value))
    if number < minimum:
        raise pytest.UsageError("%s=%d is below %d" % (name, number, minimum))
    return number


@pytest.fixture(scope="session")
def load_seconds():
    """How long pgbench writes flat out (AUDITRON_LOAD_SECONDS; the issue's full run is 300)."""
    return env_int("AUDITRON_LOAD_SECONDS", DEFAULT_SECONDS, minimum=10)


@pytest.fixture(scope="session")
def load_objects():
    """How many small objects the mirror copies (AUDITRON_LOAD_OBJECTS; the issue's full run is 100000)."""
    return env_int("AUDITRON_LOAD_OBJECTS", DEFAULT_OBJECTS, minimum=100)


@pytest.fixture(scope="session")
def lab_archiving(lab, tmp_path_factory):
    """pgBackRest configured and WAL archived on the lab's primary (see faults.ensure_lab_archiving)."""
    return faults.ensure_lab_archiving(lab, tmp_path_factory.mktemp("configure-reports"))
