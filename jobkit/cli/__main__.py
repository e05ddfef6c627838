"""``python -m jobkit.cli``: how ``jobkit up`` starts its scheduler and API children."""

from __future__ import annotations

import sys

from jobkit.cli.main import main

sys.exit(main())
