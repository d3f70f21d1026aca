"""pyexec zygote entry point (runs inside nsjail; see docs/internals.md).

    python3 -E -s -B /pyexec/worker/zygote.py --control-fd 3
        --max-frame-bytes N --tmp-size-bytes N --max-processes N
        --max-open-files N --max-file-size-bytes N

Owns nothing but starting ``pyexec_worker.serve``; the package is found next
to this file (sys.path[0]).
"""

import sys

from pyexec_worker.serve import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
