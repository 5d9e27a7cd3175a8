"""edgeslim: compress Keras 3 models and deploy them to edge runtimes.

This top-level module stays import-light: importing ``edgeslim`` (or ``edgeslim.runtime``)
never imports TensorFlow or Keras, so the runtime works on a device without them.
"""

import os

# Quiet TensorFlow's C++ start-up chatter and pin Keras to the TensorFlow backend, before any
# submodule imports them (nothing here imports them itself).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from edgeslim.errors import EdgeslimError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EdgeslimError", "__version__"]
