"""``python -m switch.merchant_notify``: see ``switch.merchant_notify.cli``."""

import sys

from switch.merchant_notify.cli import main

sys.exit(main())
