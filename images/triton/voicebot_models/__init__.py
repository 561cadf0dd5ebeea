"""The Triton models' own code: the weights manifest and resolver, ``voicebot-models fetch``,
serving helpers and the streaming-ASR state.

It lives beside the model repository (images/triton/) and is installed by both Triton images and
by the local stack; the gateway never imports it. Light on purpose: the ``model.py`` files import
:func:`resolve_model` at start-up, and it runs on the Triton bases' Python (3.10 and later).
"""

from voicebot_models.manifest import (
    DEFAULT_MANIFEST,
    Manifest,
    ManifestError,
    Profile,
    WeightsEntry,
    load_manifest,
)
from voicebot_models.resolve import ResolvedWeights, WeightsNotFoundError, resolve_entry, resolve_model

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
