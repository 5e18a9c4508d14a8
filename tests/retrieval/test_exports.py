"""`thinktank.retrieval`'s public names: sorted the way ruff keeps them, and all resolvable."""

import thinktank.retrieval as retrieval


def test_exports_sorted_and_resolvable():
    def key(name):
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert retrieval.__all__ == sorted(retrieval.__all__, key=key)
    assert all(getattr(retrieval, name) is not None for name in retrieval.__all__)
