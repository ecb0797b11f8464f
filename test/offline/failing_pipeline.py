"""A pipeline stand-in for the bag tests that dies mid-bag."""

from __future__ import annotations


class FailsOnThirdFrame:
    """A pipeline that dies mid-bag, like a crash or Ctrl-C half-way."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0
        self.info = inner.info

    def __call__(self, rgb):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.inner(rgb)
