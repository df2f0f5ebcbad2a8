import sys

from sr4zct.cli import main

sys.exit(main())
