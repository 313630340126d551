import sys

from torchcorr.cli import main

sys.exit(main())
