"""Exporting a segmentor for other runtimes: ONNX (`sceneparse.export.onnx`), with the dynamic-size
form of the PSA head it needs (`sceneparse.export.dynamic_psa`)."""
