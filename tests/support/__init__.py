"""Reusable test infrastructure: a private dockerd, locally built images and server processes.

Nothing here imports the project's packages, so any test tier can use it.
"""
