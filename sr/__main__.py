"""`python -m sr` runs the `sr` command."""

from sr.cli import main

raise SystemExit(main())
