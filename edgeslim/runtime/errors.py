"""The one exception type of the runtime: a model file or an input the runtime cannot use."""

from __future__ import annotations

from edgeslim.errors import EdgeslimError


class RuntimeModelError(EdgeslimError):
    """A missing, corrupt or unsupported model file, or an input of the wrong shape or dtype.

    A subclass of :class:`EdgeslimError`, so the CLI prints it as one line and exits with code 2.
    """
