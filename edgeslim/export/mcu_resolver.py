"""TFLite Micro's ``MicroMutableOpResolver`` method names, and a stand-in header to compile against.

Method names follow TFLite Micro's own generator rule (``CONV_2D`` -> ``AddConv2D``), with the
exceptions its header makes. ``RESOLVER_METHODS`` lists the methods of the real class
(tensorflow/lite/micro/micro_mutable_op_resolver.h); the compile check fails on any other name.
"""

from __future__ import annotations

import re

_EXCEPTIONS = {
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
}

# The method names of the real class, one string so the list stays readable.
_METHOD_NAMES = """
    AddAbs AddAdd AddAddN AddArgMax AddArgMin AddAssignVariable AddAveragePool2D AddBatchMatMul
    AddBatchToSpaceNd AddBroadcastArgs AddBroadcastTo AddCallOnce AddCast AddCeil AddCircularBuffer
    AddConcatenation AddConv2D AddCos AddCumSum AddDecode AddDelay AddDepthToSpace AddDepthwiseConv2D
    AddDequantize AddDetectionPostprocess AddDiv AddDynamicUpdateSlice AddElu AddEmbeddingLookup
    AddEnergy AddEqual AddEthosU AddExp AddExpandDims AddFftAutoScale AddFill AddFilterBank
    AddFilterBankLog AddFilterBankSpectralSubtraction AddFilterBankSquareRoot AddFloor AddFloorDiv
    AddFloorMod AddFramer AddFullyConnected AddGather AddGatherNd AddGreater AddGreaterEqual
    AddHardSwish AddIf AddIrfft AddL2Normalization AddL2Pool2D AddLeakyRelu AddLess AddLessEqual AddLog
    AddLogicalAnd AddLogicalNot AddLogicalOr AddLogistic AddLogSoftmax AddMaximum AddMaxPool2D AddMean
    AddMinimum AddMirrorPad AddMul AddNeg AddNotEqual AddOverlapAdd AddPack AddPad AddPadV2 AddPCAN
    AddPrelu AddQuantize AddReadVariable AddReduceAll AddReduceMax AddReduceMin AddRelu AddRelu6
    AddReshape AddResizeBilinear AddResizeNearestNeighbor AddReverseV2 AddRfft AddRound AddRsqrt
    AddSelectV2 AddShape AddSin AddSlice AddSoftmax AddSpaceToBatchNd AddSpaceToDepth AddSplit AddSplitV
    AddSqrt AddSquare AddSquaredDifference AddSqueeze AddStacker AddStridedSlice AddSub AddSum AddSvdf
    AddTanh AddTranspose AddTransposeConv AddUnidirectionalSequenceLSTM AddUnpack AddVarHandle AddWhile
    AddWindow AddZerosLike
"""
RESOLVER_METHODS = frozenset(_METHOD_NAMES.split())


def resolver_method(op: str) -> str:
    """``CONV_2D`` -> ``AddConv2D``; a custom op's code goes through the same rule."""
    if op in _EXCEPTIONS:
        return _EXCEPTIONS[op]
    parts = re.split(r"[_\-]", op.replace("TFLite", ""))
    name = "".join(
        p[0].upper() + p[1:].lower() if len(p) > 1 and p[0].isalpha() else p.upper() for p in parts
    )
    return "Add" + name


def stub_header() -> str:
    """A stand-in for the real header: the same method names, and the same rule that an Add beyond the
    template capacity N fails; ``registered()`` lets the check program see the count."""
    methods = "\n".join(f"  TfLiteStatus {m}() {{ return Register(); }}" for m in sorted(RESOLVER_METHODS))
    return f"""#pragma once
typedef enum TfLiteStatus {{ kTfLiteOk = 0, kTfLiteError = 1 }} TfLiteStatus;
namespace tflite {{
template <unsigned int tOpCount>
class MicroMutableOpResolver {{
 public:
{methods}
  unsigned int registered() const {{ return count_; }}

 private:
  TfLiteStatus Register() {{
    if (count_ >= tOpCount) return kTfLiteError;
    ++count_;
    return kTfLiteOk;
  }}
  unsigned int count_ = 0;
}};
}}  // namespace tflite
"""
