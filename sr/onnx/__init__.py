"""ONNX: export with built-in verification (`export`), and ONNX Runtime inference (`runtime`)."""
