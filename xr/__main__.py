import sys

from xr.cli import main

sys.exit(main())
