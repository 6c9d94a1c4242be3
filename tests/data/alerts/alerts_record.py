"""A notify command for the alert tests: appends the JSON alert read on stdin to the file
named by its first argument, one line each (it checks the input is JSON)."""

import json
import sys

document = json.load(sys.stdin)
with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write(json.dumps(document, sort_keys=True) + "\n")
