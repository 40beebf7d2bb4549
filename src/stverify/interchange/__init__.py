"""Interchange with other verifiers: VNN-COMP files (instances, results), VNN-LIB properties, ONNX export."""
