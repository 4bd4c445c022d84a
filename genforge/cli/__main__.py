"""`python -m genforge.cli VERB ...` (as torchrun runs it)."""
import sys

from genforge.cli import main

sys.exit(main())
