"""graphnn's version: one place, imported by the package and by the modules that record it
(checkpoints, the compile cache key, run files, ONNX files) without importing the package."""
__version__ = "0.2.0"
