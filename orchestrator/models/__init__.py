"""Model weights for the Triton models: the manifest, the resolver, and ``voicebot models fetch``.

Light on purpose: the Triton ``model.py`` files import :func:`resolve_model` at start-up.
"""

from orchestrator.models.manifest import (
    DEFAULT_MANIFEST,
    Manifest,
    ManifestError,
    Profile,
    WeightsEntry,
    load_manifest,
)
from orchestrator.models.resolve import ResolvedWeights, WeightsNotFoundError, resolve_entry, resolve_model

__all__ = [
    "DEFAULT_MANIFEST",
    "Manifest",
    "ManifestError",
    "Profile",
    "ResolvedWeights",
    "WeightsEntry",
    "WeightsNotFoundError",
    "load_manifest",
    "resolve_entry",
    "resolve_model",
]
