"""Reduced-precision variants of the served ONNX models, each used only where an accuracy guard
has proved it agrees with fp32 (docs/precision.md)."""
