from edgeslim.supervisor import entrypoint

entrypoint()
