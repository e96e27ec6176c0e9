"""``python -m repo_updater.entrypoints.cli``: the command line."""

import sys

from repo_updater.entrypoints.cli import main

sys.exit(main())
