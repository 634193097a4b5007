#!/usr/bin/python3
"""ONNX's own checker on an exported file: the full check (which includes strict shape inference),
shape inference with type checks, and the contract's input and output. Prints one line; exits 1
with the checker's message on failure."""
import sys

import onnx


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def main(path):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    graph = model.graph
    contract = ([(i.name, dims(i)) for i in graph.input], [(o.name, dims(o)) for o in graph.output])
    expected = ([("image", ["N", 1, 28, 28])], [("log_probs", ["N", 10])])
    if contract != expected:
        sys.exit(f"{path}: inputs and outputs {contract}, not {expected}")
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    print(f"onnx {onnx.__version__} checker and strict shape inference: ok (IR {model.ir_version}, opset {opset[0]})")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        sys.exit(f"{sys.argv[1]}: {error}")
