"""Print the table of a committed bench run (docs/bench/results-*.json), as docs/performance.md shows it.

    python -m bench.report docs/bench/results-20261202T222153.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import table


def main(argv: list[str] | None = None) -> int:
    (path,) = argv if argv is not None else sys.argv[1:]
    print(table.render(json.loads(Path(path).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
