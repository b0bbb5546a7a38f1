"""Run-time messages that reach the user: the log, and a toast in the browser (web/js/warnings.js).

A node's settings are checked when it runs, but some can only be judged once the sampler has
started (a window that holds none of the sampled steps): those warnings arrive here.
"""
import logging

log = logging.getLogger("FocalGuidance")
EVENT = "focal_guidance.message"


def warn(node: str, message: str, **details) -> None:
    _tell(node, message, logging.WARNING, "warn", details)


def inform(node: str, message: str, **details) -> None:
    _tell(node, message, logging.INFO, "info", details)


def _tell(node, message, level, severity, details):
    """``details`` ride along to the browser, e.g. ``node_id`` and ``auto_picks`` for the node's own display."""
    log.log(level, "%s: %s", node, message)
    try:
        from server import PromptServer
    except ImportError:  # in-process use without the HTTP server
        return
    server = getattr(PromptServer, "instance", None)
    if server is not None:
        server.send_sync(EVENT, {"node": node, "message": message, "severity": severity, **details})
