"""``python -m contracts.schema``: regenerate the committed JSON Schema files."""

from contracts.schema import write

for path in write():
    print(path)
