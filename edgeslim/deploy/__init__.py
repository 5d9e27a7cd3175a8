"""Deploy bundles: what to copy to a Raspberry Pi, a Coral board or a microcontroller project."""

from edgeslim.deploy.bundle import BUNDLE_TARGETS, make_bundle

__all__ = ["BUNDLE_TARGETS", "make_bundle"]
