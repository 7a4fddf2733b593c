"""``python -m vcfstream.cli`` = the ``vcfstream`` command."""

import sys

from vcfstream.cli.main import main

sys.exit(main())
