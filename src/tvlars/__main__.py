import sys

from tvlars.cli import main

sys.exit(main())
