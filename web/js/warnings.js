// Run-time messages of the Focal Guidance nodes (nodes/notify.py), shown as a toast: a setting that
// cannot act in this run (say, a step window that holds none of the sampled steps) must not pass
// silently, and auto mode tells which blocks it picked. Python composes the message; this file shows it.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EVENT = "focal_guidance.message";

app.registerExtension({
    name: "FocalGuidance.Warnings",
    setup() {
        api.addEventListener(EVENT, ({ detail }) => {
            const toast = app.extensionManager?.toast;
            if (toast) {
                toast.add({ severity: detail.severity, summary: detail.node, detail: detail.message, life: 10000 });
            } else {
                console.warn(`${detail.node}: ${detail.message}`);
            }
        });
    },
});
