"""Where a classifier's head starts: the tensor a mixed variant keeps in fp32 from
(openvino_runtime.split_at). The head is the model's final fully connected layer (Gemm, or MatMul
with its bias Add) and what follows it up to the outputs (activations, reshapes, scaling): the
part where a few hundred large weights are summed into each logit, so the rounding of bf16 is
amplified most, for a cost that is negligible next to the convolutions before it."""

from __future__ import annotations

from pathlib import Path

# Operations that may follow the final fully connected layer on the way to an output.
_AFTER_HEAD = frozenset(
    {"Add", "Mul", "Div", "Sub", "Sigmoid", "Softmax", "Identity", "Reshape", "Flatten", "Squeeze"}
)
_FULLY_CONNECTED = frozenset({"Gemm", "MatMul"})


def classifier_head_input(onnx_path: Path) -> str | None:
    """The input tensor of the fully connected layer every output of the model comes from; None
    when the model does not end in one (a detector's convolutional heads, several heads)."""
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:  # protobuf's DecodeError and friends: not a graph this can read, so no head
        return None
    producer = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name for tensor in graph.initializer}
    starts: set[str] = set()
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type in _AFTER_HEAD:
            # Follow the data, not a constant operand (a bias, a scale, a shape).
            data = [name for name in node.input if name and name not in initializers and name in producer]
            if len(data) != 1:
                return None
            node = producer[data[0]]
        if node is None or node.op_type not in _FULLY_CONNECTED:
            return None
        starts.add(node.input[0])
    return starts.pop() if len(starts) == 1 else None
