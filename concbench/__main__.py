"""``python -m concbench VERB``: the same as the ``concbench`` command."""

import sys

from concbench.command import main

if __name__ == "__main__":
    sys.exit(main())
