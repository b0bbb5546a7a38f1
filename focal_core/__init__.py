"""Pure-PyTorch core of Focal Guidance: metrics, region anchors, attention math, model families.

Nothing in this package imports ComfyUI; ``nodes/`` is the only place that does.
"""
