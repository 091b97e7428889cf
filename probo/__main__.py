import sys

from probo.cli import main

sys.exit(main())
