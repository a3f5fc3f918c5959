"""`python -m app.cli`: the `orchestrator` command."""

import sys

from app.cli.main import main

sys.exit(main())
