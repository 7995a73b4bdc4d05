"""moto server, the AWS emulator that stands in for KMS and Route53 in the lab.

moto keeps its state in memory and makes KMS key material at random, so a restart would leave
every backup whose data key it wrapped unreadable. The lab seeds moto's id generator and
derives key material from the lab's seed, so a restarted emulator makes the same key under
the same id. This is for the lab only: real KMS keys never leave KMS.

Run as a script (not imported from the repository) so that it needs nothing but the venv.
"""

import argparse
import hashlib
import itertools


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    from moto.moto_api._internal import mock_random  # pylint: disable=import-outside-toplevel
    import moto.kms.models as kms_models  # pylint: disable=import-outside-toplevel
    from moto.server import main as moto_main  # pylint: disable=import-outside-toplevel

    mock_random.seed(args.seed)
    counter = itertools.count()

    def lab_master_key():
        return hashlib.sha256(f"auditron-lab-kms:{args.seed}:{next(counter)}".encode()).digest()

    kms_models.generate_master_key = lab_master_key
    argv = ["-H", args.host, "-p", str(args.port)]
    if args.cert and args.key:
        argv += ["-c", args.cert, "-k", args.key]
    moto_main(argv)


if __name__ == "__main__":
    main()
