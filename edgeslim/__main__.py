from edgeslim.cli import entrypoint

entrypoint()
