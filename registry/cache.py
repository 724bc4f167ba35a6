"""A small in-process LRU for immutable content (manifest bytes by digest).

Safe across replicas and deletes because a digest names its bytes forever: whether a
repository may still serve them is always asked of the database first.
"""

from __future__ import annotations

from collections import OrderedDict


class ContentCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_item: int = 1024 * 1024) -> None:
        self.max_bytes, self.max_item = max_bytes, max_item
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_item or key in self._items:
            return
        self._items[key] = value
        self._size += len(value)
        while self._size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)
