"""`python -m lab <command>`: what the Makefile's lab targets call.

Every failure prints one line, `lab: <what is wrong>`, and exits 1.
"""

import argparse
import json
import sys

from . import config, servers
from .proc import LabError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description="The AUDITRON DR lab of real servers.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start every server that is not running; write .lab/lab.json")
    sub.add_parser("down", help="stop what the lab started, by pid")
    sub.add_parser("status", help="which servers run")
    sub.add_parser("remove", help="stop the lab and delete its state")
    fail = sub.add_parser("fail", help="kill -9 a whole site (database, object store, app)")
    fail.add_argument("--site", default="primary")
    seed = sub.add_parser("seed", help="load the reference schema, data and files into a site")
    seed.add_argument("--scale", default="1")
    seed.add_argument("--site", default="primary")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            servers.up()
        elif args.command == "down":
            servers.down()
        elif args.command == "remove":
            servers.remove()
        elif args.command == "status":
            print(json.dumps(servers.status(), indent=2))
        elif args.command == "fail":
            servers.fail(args.site)
        elif args.command == "seed":
            from . import seed as seeding  # pylint: disable=import-outside-toplevel
            seeding.parse_scale(args.scale)  # bad input is refused before anything is touched
            seeding.seed(servers.load_lab_json(), args.site, args.scale)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "config"]
