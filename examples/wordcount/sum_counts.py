"""Reduce step of the word-count example: read ${map.results_file} and print the totals."""

import json
import sys

rows = json.load(open(sys.argv[1], encoding="utf-8"))
for row in rows:
    print(f"{row['item']}: {row['captures']['words']} words")
total = sum(int(row["captures"]["words"]) for row in rows if row["status"] == "succeeded")
print(f"total: {total} words in {len(rows)} files")
