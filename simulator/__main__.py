"""`python -m simulator` runs the `simulator` command."""

from simulator.cli import main

raise SystemExit(main())
