"""Deployment: inference rewrites (conv-BN folding, channels-last), raw-output wrappers for export,
ONNX export and the post-processing that turns raw outputs into detections or masks."""
