"""Layers that keep every channel where it is: activations, dropout and noise, pooling, padding,
cropping and upsampling. Max pooling, padding and activations multiply nothing; average pooling
scales each output once; bilinear upsampling weighs 2^n inputs per output."""

from __future__ import annotations

import keras

from edgeslim.layers.base import PASS, STOP, Call, LayerHandler

L = keras.layers

_AVERAGING = (
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
)
_FREE = (
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.PReLU,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.UpSampling3D,
    L.Identity,
    L.Softmax,
)
_SCALING = (L.Rescaling,)


class ElementwiseHandler(LayerHandler):
    family = "pooling and elementwise"
    handles = (*_AVERAGING, *_FREE, *_SCALING)

    def macs(self, call: Call) -> int:
        if isinstance(self.layer, _AVERAGING + _SCALING):
            return self.output_elements(call)
        if isinstance(self.layer, L.UpSampling2D) and self.layer.interpolation != "nearest":
            return 4 * self.output_elements(call)
        if isinstance(self.layer, L.PReLU):
            return self.output_elements(call)
        return 0

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        return self.params() * keep_in, self.macs(call) * keep_in

    def note(self) -> str:
        return ""

    def keeps_range(self) -> bool:
        if isinstance(
            self.layer, _AVERAGING + _SCALING + (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Softmax)
        ):
            return False
        # Max pooling, dropout and noise, padding, cropping, nearest upsampling, identity: yes.
        return not (isinstance(self.layer, L.UpSampling2D) and self.layer.interpolation != "nearest")

    def coupling(self, call: Call) -> tuple[str, str]:
        if isinstance(self.layer, L.Softmax) or self.activation_name() in ("softmax", "log_softmax"):
            return STOP, "softmax couples all channels"
        if isinstance(self.layer, L.PReLU) and self.layer.alpha.shape[-1] != 1:
            return STOP, "PReLU has one slope per channel"  # would need slicing; kept whole
        if getattr(self.layer, "data_format", "channels_last") != "channels_last":
            return STOP, "channels_first data format"
        if call.in_shape and call.out_shape and call.in_shape[-1] != call.out_shape[-1]:
            return STOP, "the channel count changes"
        return PASS, ""

    def activation_name(self) -> str:
        if isinstance(self.layer, L.Activation):
            return getattr(self.layer.activation, "__name__", "linear")
        if isinstance(self.layer, L.ReLU):
            return "relu6" if self.layer.max_value == 6 else "relu"
        return super().activation_name()
