"""ONNX Runtime: export of our models (export), the sessions and the choice of backend (runtime), the generator on it (generator)."""
