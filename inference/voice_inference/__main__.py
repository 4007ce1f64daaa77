"""``python -m voice_inference`` runs the same command as ``voice-inference``."""

import sys

from voice_inference.cli import main

sys.exit(main())
