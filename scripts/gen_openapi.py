"""Write docs/openapi.json: the REST gateway's OpenAPI document (solo/rest/openapi.py), as /openapi.json serves it.

    python scripts/gen_openapi.py           # rewrite docs/openapi.json
    python scripts/gen_openapi.py --check   # exit 1 if docs/openapi.json is stale

tests/rest checks that the served document equals the checked-in one, so a change of the proto or of a
route (solo/rest/table.py) shows in review.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "openapi.json"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from solo.rest.openapi import document
    return json.dumps(document(), indent=1, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/openapi.json is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python scripts/gen_openapi.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
