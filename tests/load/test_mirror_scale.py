"""The object mirror at many small objects: it completes, and its memory stays flat.

The measurement is the mirror benchmark's own (bench/bench_mirror.py, rss_by_count), imported
here, not copied: 1 KiB objects under a prefix of this run in the us-east-1 backup bucket are
mirrored by the engine of auditron.dr.object_mirror, in a process of its own, to a prefix in
eu-west-1, once at a tenth of the count and once at the full count (AUDITRON_LOAD_OBJECTS,
default 20,000; the issue's 100,000 with AUDITRON_LOAD_OBJECTS=100000). Each run must copy every
object (the destination lists exactly the count), and the peak RSS at the full count may exceed
the tenth's by at most a small allowance: memory that grew with the object count (a plan, a
listing or a queue held whole) would show as tens of MiB here, and hundreds at 100,000.
"""

import argparse
import tempfile

import pytest

from bench import bench_mirror

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.load]

# Peak RSS of the mirror at the full count against a tenth of it: what "flat" allows for (the
# process is about 60-70 MiB either way; a plan kept in memory costs about 1 KiB per object).
FLAT_ALLOWANCE_BYTES = 24 << 20
FLAT_ALLOWANCE_RATIO = 1.25


def test_mirror_of_many_small_objects_completes_with_flat_memory(lab, load_objects):
    args = argparse.Namespace(rss_objects=load_objects, threads=16)
    with tempfile.TemporaryDirectory(prefix="auditron-load-mirror-") as workdir:
        # Seeds, mirrors (asserting the destination lists every object), and removes both prefixes.
        runs = bench_mirror.rss_by_count(lab, args, workdir)
    small, full = runs[0], runs[-1]
    assert [run["objects"] for run in runs] == [load_objects // 10, load_objects]
    growth = full["peak_rss_bytes"] - small["peak_rss_bytes"]
    print("\nload: mirror %s" % "; ".join("%d objects in %.1f s (%.0f objects/s), peak RSS %s" % (
        run["objects"], run["seconds"], run["objects"] / run["seconds"], bench_mirror.mib(run["peak_rss_bytes"]))
        for run in runs))
    assert growth <= FLAT_ALLOWANCE_BYTES and full["peak_rss_bytes"] <= small["peak_rss_bytes"] * FLAT_ALLOWANCE_RATIO, (
        "memory grows with the object count: peak RSS %s at %d objects, %s at %d" % (
            bench_mirror.mib(small["peak_rss_bytes"]), small["objects"], bench_mirror.mib(full["peak_rss_bytes"]),
            full["objects"]))
