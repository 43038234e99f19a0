"""Making the shipped artefacts from code and data: the ONNX graphs of the models and the case library."""
