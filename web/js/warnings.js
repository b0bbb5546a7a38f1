// Run-time messages of the Focal Guidance nodes (nodes/notify.py), shown as a toast: a setting that
// cannot act in this run (say, a step window that holds none of the sampled steps) must not pass
// silently, and auto mode tells which blocks it picked. Auto mode's picks are also written on the
// Focal Attention Transfer node that made them, in a read-only widget that is never saved.
// Python composes every message; this file only shows it.
const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

const EVENT = "focal_guidance.message";
const PICKS_WIDGET = "auto picks";

function showPicks(nodeId, picks) {
    const node = app.graph?.getNodeById?.(nodeId);
    if (!node) return;
    const text = `weak ${picks.weak_blocks} | sources ${picks.source_blocks}`;
    let widget = node.widgets?.find((w) => w.name === PICKS_WIDGET);
    if (!widget) {
        widget = node.addWidget("text", PICKS_WIDGET, text, () => {}, { serialize: false });
        widget.serialize = false;   // the frontend reads this property when it saves widgets_values
    }
    widget.value = text;
    node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
    name: "FocalGuidance.Warnings",
    setup() {
        api.addEventListener(EVENT, ({ detail }) => {
            if (detail.node_id != null && detail.auto_picks) showPicks(detail.node_id, detail.auto_picks);
            const toast = app.extensionManager?.toast;
            if (toast) {
                toast.add({ severity: detail.severity, summary: detail.node, detail: detail.message, life: 10000 });
            } else {
                console.warn(`${detail.node}: ${detail.message}`);
            }
        });
    },
});
