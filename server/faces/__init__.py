"""Face post-processing domain code: detector decoding, NMS, 5-point alignment and embedding maths."""
