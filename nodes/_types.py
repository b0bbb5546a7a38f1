"""Custom wire types shared by the pack's nodes."""
from comfy_api.latest import io

Anchor = io.Custom("FOCAL_ANCHOR")
Probe = io.Custom("FOCAL_PROBE")
