"""``python -m graphnn``: the command line (see ``graphnn.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
