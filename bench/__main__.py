"""``python -m bench``: the ``bench`` command, for machines where another program owns that name."""

import sys

from bench.cli import main

sys.exit(main())
