"""python -m bench [--list] [<name> [arguments]]: run one benchmark, or all of them."""

import importlib
import pkgutil
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def available():
    """{name: first line of its docstring} of every bench/bench_<name>.py."""
    found = {}
    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        if info.name.startswith("bench_"):
            module = importlib.import_module("bench.%s" % info.name)
            found[info.name[len("bench_"):]] = ((module.__doc__ or "").strip().splitlines() or [""])[0]
    return dict(sorted(found.items()))


def main(argv):
    benchmarks = available()
    if argv and argv[0] in ("-h", "--help", "--list"):
        print(__doc__.strip())
        for name, line in benchmarks.items():
            print("  %-12s %s" % (name, line))
        return 0
    if not argv:
        status = 0
        for name in benchmarks:
            print("== bench %s" % name, flush=True)
            status = importlib.import_module("bench.bench_%s" % name).main([]) or status
        return status
    name, rest = argv[0], argv[1:]
    if name not in benchmarks:
        print("bench: no benchmark %r (have: %s)" % (name, ", ".join(benchmarks) or "none"), file=sys.stderr)
        return 2
    return importlib.import_module("bench.bench_%s" % name).main(rest) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
