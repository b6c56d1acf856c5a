"""``python -m provision`` is the ``cluster`` command."""

import sys

from provision.cli import main

sys.exit(main())
