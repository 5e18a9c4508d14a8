"""The retrieval error: a corpus that cannot be indexed, or an index that cannot be searched.

It hangs under `ThinktankError` beside `TaskDataError`; a failing embedding server stays a `BackendError`.
"""

from __future__ import annotations

from thinktank.exceptions import ThinktankError


class RetrievalError(ThinktankError):
    """An empty or malformed corpus, a corpus changing while it is indexed, or embeddings of the wrong dimension."""
