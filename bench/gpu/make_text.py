"""Writes N lines of seeded random English-like text as jsonl ({"text": ...}) for the
end-to-end training benchmark (both sides read the same file).

Usage: python3 make_text.py OUT.jsonl [N_LINES]
"""

import json
import random
import sys

WORDS = (
    "the of and to in is was for on that with as by at from his her they this which "
    "model data train loss token layer weight adapter rank learning rate batch step "
    "river mountain city garden music light winter summer story question answer"
).split()

out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
rng = random.Random(0)
with open(out, "w", encoding="utf-8") as f:
    for _ in range(n):
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120)))
        f.write(json.dumps({"text": line.capitalize() + "."}) + "\n")
