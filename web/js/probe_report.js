// Canvas view of "Semantic Layer Report" (nodes/report.py). Python computes every number and sends it as
// ui.focal_probe[0], with the report's palette (nodes/plots.py); this file only draws it: per-block curves,
// one heatmap tile per block, and a detail view of the selected block (click a block in the curve or a tile).
// When the node was given a picture, the panel brings its grey backdrop (panel.picture) and every map is drawn
// over it at the panel's opacity, as in the heatmaps PNG.
// The selected block is kept in the node's properties, so it is saved with the workflow.
const { app } = window.comfyAPI.app;

const NODE_NAME = "FocalSemanticLayerReport";
const WIDGET_NAME = "focal_probe_view";
const SELECTED = "selected block";  // node.properties key
const MIN_HEIGHT = 440; // CSS px of the widget
const FONT = "11px sans-serif";
// The canvas's own chrome; the data colours (series, block sets, heatmap ramp) come with the panel.
const CHROME = { bg: "#1b1b1f", panel: "#25252b", grid: "#3a3a42", text: "#d8d8de", dim: "#8a8a96", selected: "#ffeb3b" };

function rampColour(ramp, t) {
    const x = Math.min(Math.max(Number.isFinite(t) ? t : 0, 0), 1) * (ramp.length - 1);
    const i = Math.min(Math.floor(x), ramp.length - 2), f = x - i;
    return ramp[i].map((c, k) => Math.round(c + (ramp[i + 1][k] - c) * f));
}

function translucent(hex, alpha) {
    const [r, g, b] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
    return `rgba(${r},${g},${b},${alpha})`;
}

function range(values) {
    const finite = values.filter(Number.isFinite);
    return finite.length ? [Math.min(...finite), Math.max(...finite)] : [0, 1];
}

function fmt(v) {
    return Number.isFinite(v) ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toFixed(4)) : "n/a";
}

function status(panel, b) {
    return panel.weak.includes(b) ? "weak" : panel.responsive.includes(b) ? "responsive" : "";
}

// A heatmap [h][w] as an offscreen canvas, min-max scaled on its own values.
function heatmapImage(map, ramp) {
    const h = map.length, w = h ? map[0].length : 0;
    const image = Object.assign(document.createElement("canvas"), { width: Math.max(w, 1), height: Math.max(h, 1) });
    if (!h || !w) return image;
    const values = map.flat(), [lo, hi] = range(values), pixels = new ImageData(w, h);
    values.forEach((v, i) => pixels.data.set([...rampColour(ramp, hi > lo ? (v - lo) / (hi - lo) : 0.5), 255], i * 4));
    image.getContext("2d").putImageData(pixels, 0, 0);
    return image;
}

// A block's map at (x, y, w, h): over the backdrop (smoothed, at the picture's opacity) when there is one.
function drawMap(ctx, view, image, x, y, w, h) {
    if (!view.backdrop) {
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(image, x, y, w, h);
        return;
    }
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(view.backdrop, x, y, w, h);
    ctx.globalAlpha = view.panel.picture.alpha;
    ctx.drawImage(image, x, y, w, h);
    ctx.globalAlpha = 1;
}

function createView(node) {
    const root = document.createElement("div");
    root.style.cssText = "width:100%;height:100%;position:relative;";
    const canvas = document.createElement("canvas");
    canvas.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;cursor:pointer;";
    root.appendChild(canvas);
    const view = { node, root, canvas, panel: null, latest: null, images: [], backdrop: null, selected: -1, hits: [],
        frame: 0 };

    view.schedule = () => {
        if (!view.frame) view.frame = requestAnimationFrame(() => { view.frame = 0; draw(view); });
    };
    view.select = (block) => {
        if (!view.panel || !(block >= 0 && block < view.panel.similarity.length)) return false;
        view.selected = block;
        node.properties[SELECTED] = block;
        view.schedule();
        return true;
    };
    view.onPointerDown = (event) => {
        if (event.button !== 0) return;
        const rect = canvas.getBoundingClientRect();
        if (!rect.width || !rect.height) return;
        const x = (event.clientX - rect.left) * canvas.clientWidth / rect.width;
        const y = (event.clientY - rect.top) * canvas.clientHeight / rect.height;
        const hit = view.hits.find(r => x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h);
        if (hit && view.select(hit.block)) event.stopPropagation();
    };
    canvas.addEventListener("pointerdown", view.onPointerDown);
    view.resizeObserver = new ResizeObserver(view.schedule);
    view.resizeObserver.observe(root);
    view.destroy = () => {
        canvas.removeEventListener("pointerdown", view.onPointerDown);
        view.resizeObserver.disconnect();
        cancelAnimationFrame(view.frame);
    };
    // A panel with a picture is shown once its backdrop has loaded, so its maps are never drawn without it.
    view.setPanel = (panel) => {
        view.latest = panel;
        if (!panel.picture) return show(panel, null);
        const backdrop = new Image();
        backdrop.onload = () => { if (view.latest === panel) show(panel, backdrop); };
        backdrop.onerror = () => {
            console.warn("FocalGuidance: the report's picture did not load; its maps are drawn without it");
            if (view.latest === panel) show(panel, null);
        };
        backdrop.src = panel.picture.png;
    };
    const show = (panel, backdrop) => {
        view.panel = panel;
        view.backdrop = backdrop;
        view.images = (panel.heatmaps || []).map(map => heatmapImage(map, panel.palette.ramp));
        const n = panel.similarity.length, saved = node.properties?.[SELECTED];
        view.selected = saved >= 0 && saved < n ? saved : panel.weak[0] ?? panel.responsive[0] ?? 0;
        view.schedule();
    };
    return view;
}

function text(ctx, str, x, y, color = CHROME.text, align = "left", maxWidth = undefined) {
    ctx.fillStyle = color;
    ctx.textAlign = align;
    ctx.fillText(str, x, y, maxWidth);
}

function draw(view) {
    const { canvas, panel } = view;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
        canvas.width = Math.round(width * dpr);
        canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = CHROME.bg;
    ctx.fillRect(0, 0, width, height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    view.hits = [];
    if (!panel) {
        text(ctx, "Queue the graph to see the per-block report.", width / 2, height / 2, CHROME.dim, "center");
    } else {
        const curveH = Math.round(height * 0.38);
        drawCurves(ctx, view, { x: 6, y: 4, w: width - 12, h: curveH });
        const tilesH = drawTiles(ctx, view, { x: 6, y: curveH + 10, w: width - 12, h: Math.round(height * 0.3) });
        drawDetail(ctx, view, { x: 6, y: curveH + tilesH + 16, w: width - 12, h: height - curveH - tilesH - 18 });
    }
}

function drawCurves(ctx, view, box) {
    const { panel } = view, colour = panel.palette;
    const n = panel.similarity.length;
    ctx.fillStyle = CHROME.panel;
    ctx.fillRect(box.x, box.y, box.w, box.h);
    const legend = [["similarity", colour.similarity], ["Moran's I", colour.morans], ["score", colour.score],
        ["trend", colour.trend], ["weak", colour.weak], ["responsive", colour.responsive]];
    let lx = box.x + 8;
    for (const [label, color] of legend) {
        ctx.fillStyle = color;
        ctx.fillRect(lx, box.y + 8, 10, 4);
        text(ctx, label, lx + 13, box.y + 10);
        lx += 20 + ctx.measureText(label).width;
    }
    const plot = { x: box.x + 8, y: box.y + 22, w: box.w - 16, h: box.h - 40 };
    const col = plot.w / Math.max(n, 1);
    const cx = (b) => plot.x + (b + 0.5) * col;
    for (let b = 0; b < n; b++) {
        const kind = status(panel, b);
        if (kind) {
            ctx.fillStyle = translucent(colour[kind], 0.28);
            ctx.fillRect(plot.x + b * col, plot.y, col, plot.h);
        }
        if (b === view.selected) {
            ctx.strokeStyle = CHROME.selected;
            ctx.lineWidth = 1;
            ctx.strokeRect(plot.x + b * col + 0.5, plot.y + 0.5, col - 1, plot.h - 1);
        }
        view.hits.push({ block: b, x: plot.x + b * col, y: plot.y, w: col, h: box.h - 22, area: "curve" });
    }
    ctx.fillStyle = CHROME.grid;
    ctx.fillRect(plot.x, plot.y + plot.h, plot.w, 1);  // x axis
    const scoreRange = range([...panel.score, ...panel.trend]);
    const series = [
        [panel.similarity, range(panel.similarity), colour.similarity, []],
        [panel.morans, range(panel.morans), colour.morans, []],
        [panel.trend, scoreRange, colour.trend, [4, 3]],
        [panel.score, scoreRange, colour.score, []],
    ];
    for (const [values, [lo, hi], color, dash] of series) {
        const py = (v) => plot.y + plot.h - 4 - (hi > lo ? (v - lo) / (hi - lo) : 0.5) * (plot.h - 8);
        ctx.strokeStyle = ctx.fillStyle = color;
        ctx.lineWidth = 1.6;
        ctx.setLineDash(dash);
        ctx.beginPath();
        let open = false;
        values.forEach((v, b) => {
            if (!Number.isFinite(v)) { open = false; return; }
            open ? ctx.lineTo(cx(b), py(v)) : ctx.moveTo(cx(b), py(v));
            open = true;
        });
        ctx.stroke();
        ctx.setLineDash([]);
        values.forEach((v, b) => {
            if (Number.isFinite(v)) { ctx.beginPath(); ctx.arc(cx(b), py(v), 2.2, 0, 2 * Math.PI); ctx.fill(); }
        });
    }
    // Block numbers: the selected one first, then weak/responsive, then the rest; none may overlap.
    const rank = (b) => (b === view.selected ? 0 : status(panel, b) ? 1 : 2);
    const taken = [];
    for (const b of [...Array(n).keys()].sort((a, c) => rank(a) - rank(c) || a - c)) {
        const half = ctx.measureText(String(b)).width / 2 + 2;
        if (taken.some(([l, r]) => cx(b) + half > l && cx(b) - half < r)) continue;
        taken.push([cx(b) - half, cx(b) + half]);
        const kind = status(panel, b);
        text(ctx, String(b), cx(b), plot.y + plot.h + 9, rank(b) ? (kind ? colour[kind] : CHROME.dim) : CHROME.selected, "center");
    }
}

function tileLayout(n, aspect, box, labelH, gap) {
    let best = { cols: n, rows: 1, w: 0 };
    for (let rows = 1; rows <= n; rows++) {
        const cols = Math.ceil(n / rows);
        const w = Math.min((box.w - (cols - 1) * gap) / cols, (box.h / rows - labelH - gap) * aspect, 140);
        if (w > best.w) best = { cols, rows, w };
    }
    return { ...best, h: best.w / aspect };
}

function drawTiles(ctx, view, box) {
    const { panel, images } = view;
    const n = images.length;
    if (!n) return 0;
    const aspect = images[0].width / images[0].height, labelH = 13, gap = 6;
    const { cols, rows, w, h } = tileLayout(n, aspect, box, labelH, gap);
    const x0 = box.x + (box.w - (cols * w + (cols - 1) * gap)) / 2;
    images.forEach((image, b) => {
        const x = x0 + (b % cols) * (w + gap), y = box.y + Math.floor(b / cols) * (h + labelH + gap);
        const kind = status(panel, b);
        const label = `${b}${kind === "weak" ? " W" : kind === "responsive" ? " R" : ""}`;
        text(ctx, label, x + w / 2, y + labelH / 2, kind ? panel.palette[kind] : CHROME.text, "center");
        drawMap(ctx, view, image, x, y + labelH, w, h);
        const outline = b === view.selected ? CHROME.selected : kind ? panel.palette[kind] : null;
        if (outline) {
            ctx.strokeStyle = outline;
            ctx.lineWidth = 2;
            ctx.strokeRect(x - 1, y + labelH - 1, w + 2, h + 2);
        }
        view.hits.push({ block: b, x, y, w, h: h + labelH, area: "tile" });
    });
    return rows * (h + labelH + gap);
}

function drawDetail(ctx, view, box) {
    const { panel, images, selected: b } = view, colour = panel.palette;
    ctx.fillStyle = CHROME.panel;
    ctx.fillRect(box.x, box.y, box.w, box.h);
    const image = images[b];
    if (!image) return;
    const aspect = image.width / image.height;
    let h = box.h - 12, w = h * aspect;
    if (w > box.w * 0.5) { w = box.w * 0.5; h = w / aspect; }
    const x = box.x + 6, y = box.y + (box.h - h) / 2;
    drawMap(ctx, view, image, x, y, w, h);
    const ramp = ctx.createLinearGradient(0, y + h, 0, y);
    const stops = panel.palette.ramp;
    stops.forEach((c, i) => ramp.addColorStop(i / (stops.length - 1), `rgb(${c.join(",")})`));
    ctx.fillStyle = ramp;
    ctx.fillRect(x + w + 4, y, 6, h);
    const [lo, hi] = range((panel.heatmaps[b] || []).flat());
    const kind = status(panel, b);
    const grid = panel.grid || [];
    const lines = [
        [`Block ${b}` + (kind === "weak" ? " — Semantic-Weak (W)" : kind === "responsive" ? " — responsive (R)" : ""),
            kind ? colour[kind] : CHROME.selected],
        [`similarity  ${fmt(panel.similarity[b])}`, colour.similarity],
        [`Moran's I  ${fmt(panel.morans[b])}`, colour.morans],
        [`score  ${fmt(panel.score[b])}   trend  ${fmt(panel.trend[b])}`, colour.score],
        [`map  ${fmt(lo)} … ${fmt(hi)}  (frame ${panel.frame}, grid ${grid.join("×")})`, CHROME.dim],
        ...(panel.picture ? [[`${panel.metric} response to ${panel.picture.subject}, over the picture`, CHROME.text]] : []),
        [`weak: ${panel.weak_blocks || "none"}   responsive: ${panel.responsive_blocks || "none"}`, CHROME.text],
        [`metric ${panel.metric} · steps ${(panel.steps || []).join(", ")}`, CHROME.dim],
        [String(panel.family ?? ""), CHROME.dim],
    ];
    const tx = x + w + 18, lineH = Math.min(17, (box.h - 8) / lines.length);
    ctx.font = "bold 12px sans-serif";
    lines.forEach(([str, color], i) => {
        text(ctx, str, tx, box.y + 6 + lineH * (i + 0.5), color, "left", box.x + box.w - tx - 4);
        ctx.font = FONT;
    });
}

// Wraps one instance's callback so that what was there (the frontend's, another extension's) still runs first.
function chain(node, name, callback) {
    const previous = node[name];
    node[name] = function (...args) {
        const result = previous?.apply(this, args);
        callback.apply(this, args);
        return result;
    };
}

app.registerExtension({
    name: "FocalGuidance.ProbeReport",
    nodeCreated(node) {
        if (node.constructor?.comfyClass !== NODE_NAME) return;
        const view = createView(node);
        node.addDOMWidget(WIDGET_NAME, "focal_probe", view.root, {
            serialize: false, hideOnZoom: false, getMinHeight: () => MIN_HEIGHT,
        });
        node.setSize([Math.max(node.size[0], 560), Math.max(node.size[1], node.computeSize()[1])]);
        chain(node, "onExecuted", (message) => {
            const panel = message?.focal_probe?.[0];
            if (panel) view.setPanel(panel);
        });
        chain(node, "onRemoved", view.destroy);
        view.schedule();
    },
});
