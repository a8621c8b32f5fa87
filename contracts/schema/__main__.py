"""``python -m cachebus.contracts.schema``: regenerate the committed JSON Schema files."""

from cachebus.contracts.schema import write

for path in write():
    print(path)
