import sys

from automations.apply import main

sys.exit(main())
