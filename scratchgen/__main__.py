import sys

from scratchgen.cli import main

sys.exit(main())
