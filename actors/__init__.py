"""Thin Ray actors around rlpost's core objects.

Importing this package sets no environment: a local Ray gets its loopback pinning from ``connect_ray`` (before it
starts Ray), a cluster run keeps the nodes' own addresses (``rlpost.common.runtime.deployment_env``).
"""
