"""`python -m bench [--rounds N] [--regen] [--sizes 1,2,4] [--quick]`: see bench/README.md."""
import sys

from .run import main

sys.exit(main())
