"""Run several ``genreg`` commands in one torchrun job (used by tests/test_ddp.py, one launch for all of them).

``argv[1]`` is a JSON list of argument lists; each runs ``genreg_viewer.cli.main.main(ARGS)`` as ``torchrun -m
genreg_viewer.cli.main ARGS`` would (each joins and leaves the process group itself). Exits with the largest status.
"""

import json
import sys

from genreg_viewer.cli.main import main

if __name__ == "__main__":
    sys.exit(max(main(arguments) for arguments in json.loads(sys.argv[1])))
