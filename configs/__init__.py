"""The bundled configs, shipped inside the wheel as ``distill.configs`` (read with importlib.resources)."""
