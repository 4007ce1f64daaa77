"""``python -m voice_operator`` is ``voice-operator``."""

import sys

from voice_operator.cli import main

sys.exit(main())
