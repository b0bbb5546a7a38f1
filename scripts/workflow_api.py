"""UI-format workflows (what the frontend's Save writes) as API graphs (what ``POST /prompt`` takes).

The conversion is comfy-cli's ``convert_ui_to_api`` (pinned in requirements-test.txt; setup_host.sh
installs it into the host's venv for scripts/run_main_job.py). It handles subgraphs, primitives,
reroutes, bypassed and muted nodes, and does not validate: the host does, on ``POST /prompt``.

What comfy-cli 1.23.0 does, checked against hosts 0.3.75 and 0.12.1 (tests/e2e/test_workflows.py):
- its output equals the frontend's own ``graphToPrompt`` (frontends 1.32.9 and 1.37.11) on every
  example workflow and on the host's official Wan2.2 I2V subgraph template with our nodes inside;
- subgraph nodes get ids ``"<subgraph node id>:<inner id>"``, as in the frontend, and values promoted
  onto the subgraph node reach the inner widgets;
- widgets missing from ``widgets_values`` take the schema's default (as the frontend does on load),
  and a node type the host lacks is passed through for /prompt to reject;
- a node it fails on is logged and left out of the graph: ``to_api`` raises ConversionError instead.

    api = workflow_api.to_api(json.load(open("example_workflows/x.json")), server.object_info())
"""
import logging

from comfy_cli.workflow_to_api import convert_ui_to_api


class ConversionError(ValueError):
    """comfy-cli could not convert a node (it logs and drops it; here that stops the conversion)."""


def to_api(workflow, object_info):
    """The API graph of a UI workflow, converted against a host's /object_info."""
    dropped = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: dropped.append(record.getMessage())
    logger = logging.getLogger("comfy_cli.workflow_to_api")
    logger.addHandler(handler)
    try:
        api = convert_ui_to_api(workflow, object_info)
    finally:
        logger.removeHandler(handler)
    if dropped:
        raise ConversionError("comfy-cli dropped nodes it could not convert:\n  " + "\n  ".join(dropped))
    return api
