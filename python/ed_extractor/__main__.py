"""Run the command line with ``python -m ed_extractor``."""

from ed_extractor.cli import main

raise SystemExit(main())
