"""Makes the SDK (guest-sdk-python/) and this app importable under pytest without installing anything."""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "..", "guest-sdk-python"))
