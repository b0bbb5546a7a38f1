"""Run the real ComfyUI host (``main.py --cpu``) as a subprocess and talk to its HTTP API.

Used by tests/e2e and scripts/run_main_job.py, which run under a host's venv (websocket-client, numpy and
Pillow are there). The server runs under the host's venv (``.venv/bin/python``), or, for another core named
by FOCAL_COMFYUI, under the Python that imports this module (see VENV_PYTHON).

    with ComfyServer(work_dir, models_dir=models) as server:
        prompt_id = server.post_prompt(graph)           # API-format graph
        entry = server.wait(prompt_id, timeout=300)     # the /history entry, or ExecutionFailed
        paths = server.output_paths(entry)

Nothing sleeps a fixed time. Readiness is the server's websocket (``/ws``) accepting us and sending its
first ``status`` message, tried with a bounded exponential backoff while the server boots. That
websocket stays open, so a prompt's end is the ``executing`` message with ``node`` null for its
prompt id, which the host sends after it wrote the /history entry; then /history is read once.

The server gets its own port, input/output/temp/user folders and a database file under
``work_dir`` (not ``sqlite:///:memory:``: newer hosts' assets scanner opens extra connections, and
each would see its own empty database), and an ``--extra-model-paths-config`` yaml that adds the
models folder and a ``custom_nodes`` folder holding a link to the TEST-ONLY stand-in nodes
(tests/standin_nodes). The pack itself is loaded from the host's own custom_nodes (linked there by
scripts/setup_host.sh). It is stopped by its pid on exit: terminate, then kill after a timeout. Its
log is kept in ``work_dir/server.log``; failures quote the tail.

It lives in scripts/ rather than tests/server.py on purpose: in the test process both tests/ and the
host folder are on sys.path, so a tests/server.py would shadow the host's own ``server`` module
(``comfy_extras/nodes_images.py`` does ``from server import PromptServer``).
"""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import websocket   # websocket-client (requirements-test.txt; setup_host.sh puts it in the host venv)

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-FocalGuidance"  # the pack's folder name in the host's custom_nodes
HOST_DIR = pathlib.Path(os.environ.get("FOCAL_COMFYUI", PACK_DIR / ".host" / "ComfyUI")).resolve()
# The default host runs under .venv. Another core (FOCAL_COMFYUI) runs under the Python that runs us,
# which has its requirements (e.g. FOCAL_COMFYUI=.host-0.12.1/ComfyUI .venv-0.12.1/bin/python -m pytest).
VENV_PYTHON = (pathlib.Path(sys.executable) if "FOCAL_COMFYUI" in os.environ
               else PACK_DIR / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
STANDIN_DIR = PACK_DIR / "tests" / "standin_nodes"
STANDIN_PACKAGE = "focal_standins"  # the stand-ins' folder name in the temporary custom_nodes
WORKER_DEATH = re.compile(r"^Exception in thread .*\(prompt_worker\):$", re.MULTILINE)
# Model folder keys written into the yaml when the models folder has that sub-folder.
MODEL_KEYS = ("diffusion_models", "vae", "text_encoders", "clip_vision", "checkpoints", "loras")


class ServerError(RuntimeError):
    """The server failed to start, died, rejected a prompt or timed out."""


class PromptRejected(ServerError):
    """/prompt answered 400 (validation): ``body`` holds the JSON with ``error`` and ``node_errors``."""

    def __init__(self, message, body):
        super().__init__(message)
        self.body = body


class ExecutionFailed(ServerError):
    """The prompt ran and failed: ``error`` is the execution_error message data from /history."""

    def __init__(self, message, entry, error):
        super().__init__(message)
        self.entry = entry
        self.error = error


def _die_with_parent():
    """Linux: SIGTERM the server if the process that started it dies without stopping it (e.g. SIGKILL)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_or_copy(src: pathlib.Path, dst: pathlib.Path):
    try:
        dst.symlink_to(src, target_is_directory=True)
    except OSError:  # no symlinks (e.g. Windows without developer mode)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))


def write_extra_paths(path: pathlib.Path, models_dir=None, custom_nodes_dirs=()) -> pathlib.Path:
    """An extra_model_paths yaml (absolute paths; JSON is valid YAML, so no yaml package is needed)."""
    section = {}
    if models_dir is not None:
        models_dir = pathlib.Path(models_dir).resolve()
        for key in MODEL_KEYS:
            if (models_dir / key).is_dir():
                section[key] = str(models_dir / key)
    if custom_nodes_dirs:
        section["custom_nodes"] = "\n".join(str(pathlib.Path(d).resolve()) for d in custom_nodes_dirs)
    path.write_text("# written by scripts/comfy_server.py\n" + json.dumps({"focal_guidance_test": section}, indent=2)
                    + "\n", encoding="utf-8")
    return path


def backoff(deadline, first=0.05, cap=2.0):
    """Yield until ``deadline`` (time.monotonic()), waiting first, 2 first, 4 first ... (at most ``cap``)
    between yields: a bounded exponential backoff for a server that is still booting."""
    delay = first
    while True:
        yield
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(delay, cap, remaining))
        delay *= 2


class HostSocket:
    """The host's ``/ws`` through websocket-client: JSON text messages in, binary frames (latent
    previews) skipped, pings answered by the library. Every receive is bounded by a timeout."""

    def __init__(self, host, port, path, timeout=10.0):
        self.ws = websocket.create_connection(f"ws://{host}:{port}{path}", timeout=timeout)

    def close(self):
        self.ws.close()

    def receive(self, timeout):
        """The next JSON text message, or None when none arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.ws.settimeout(remaining)
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                return None
            except websocket.WebSocketConnectionClosedException:
                raise ConnectionError("the server closed the websocket") from None
            if opcode == websocket.ABNF.OPCODE_TEXT:
                return json.loads(data)
        return None


class ComfyServer:
    def __init__(self, work_dir, models_dir=None, standins=True, host_dir=HOST_DIR, python=VENV_PYTHON,
                 extra_args=(), startup_timeout=240.0, stop_timeout=20.0):
        self.work_dir = pathlib.Path(work_dir).resolve()
        self.models_dir = None if models_dir is None else pathlib.Path(models_dir).resolve()
        self.standins = standins
        self.host_dir = pathlib.Path(host_dir).resolve()
        self.python = str(python)
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.input_dir = self.work_dir / "input"
        self.output_dir = self.work_dir / "output"
        self.temp_dir = self.work_dir / "temp"
        self.user_dir = self.work_dir / "user"
        self.custom_nodes_dir = self.work_dir / "custom_nodes"
        self.config_path = self.work_dir / "extra_model_paths.yaml"
        self.log_path = self.work_dir / "server.log"
        self.port = None
        self.proc = None
        self.startup_seconds = None
        self.client_id = uuid.uuid4().hex
        self.ws = None

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self):
        if not (self.host_dir / "main.py").is_file():
            raise ServerError(f"no ComfyUI host at {self.host_dir}: run scripts/setup_host.sh first")
        if not pathlib.Path(self.python).exists():
            raise ServerError(f"no Python at {self.python}: run scripts/setup_host.sh first")
        if not (self.host_dir / "custom_nodes" / PACK_NAME).exists():
            raise ServerError(f"the pack is not linked into {self.host_dir / 'custom_nodes'}: "
                              "run scripts/setup_host.sh")
        for d in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.custom_nodes_dir):
            d.mkdir(parents=True, exist_ok=True)
        custom_nodes = []
        if self.standins:
            link = self.custom_nodes_dir / STANDIN_PACKAGE
            if not link.exists():
                link_or_copy(STANDIN_DIR, link)
            custom_nodes.append(self.custom_nodes_dir)
        write_extra_paths(self.config_path, self.models_dir, custom_nodes)

    def command(self):
        return [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--extra-model-paths-config", str(self.config_path),
                "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
                "--temp-directory", str(self.temp_dir), "--user-directory", str(self.user_dir),
                "--database-url", f"sqlite:///{self.work_dir / 'comfyui.db'}", "--disable-auto-launch",
                *self.extra_args]

    def start(self):
        self._prepare()
        began = time.monotonic()
        for attempt in range(3):  # a free port can be taken by someone else before the server binds it
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== {' '.join(self.command())}\n".encode())
                log.flush()
                env = dict(os.environ, PYTHONUNBUFFERED="1")
                self.proc = subprocess.Popen(self.command(), cwd=self.host_dir, stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                             preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            atexit.register(self.stop)
            if self._wait_ready(began + self.startup_timeout):
                self.startup_seconds = time.monotonic() - began
                return self
            if "address already in use" not in self.log_tail(20).lower() or attempt == 2:
                break
        rc = self.stop()
        raise ServerError(f"ComfyUI did not start (exit code {rc}, {time.monotonic() - began:.0f} s)"
                          + self.log_excerpt())

    def _wait_ready(self, deadline):
        """True once the websocket is open and has sent its first ``status``; False if the server exited."""
        for _ in backoff(deadline):
            if self.proc.poll() is not None:
                return False
            try:
                ws = HostSocket("127.0.0.1", self.port, f"/ws?clientId={self.client_id}", timeout=10)
            except (OSError, websocket.WebSocketException):
                continue
            try:
                first = ws.receive(timeout=max(deadline - time.monotonic(), 1.0))
            except (OSError, ValueError, websocket.WebSocketException):
                ws.close()
                continue
            if first is not None and first.get("type") == "status":
                self.ws = ws
                return True
            ws.close()
        return False

    def stop(self):
        """Stop the server by its pid (terminate, then kill); returns its exit code."""
        proc, self.proc = self.proc, None
        if self.ws is not None:
            self.ws.close()
            self.ws = None
        if proc is None:
            return None
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout)
        return proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def serve(self, keep_log_as=None):
        """Generator for a pytest fixture: start, yield self, and always stop by pid (pass or fail),
        then copy the server log to ``keep_log_as`` when given."""
        try:
            yield self.start()
        finally:
            self.stop()
            if keep_log_as is not None and self.log_path.exists():
                shutil.copy(self.log_path, keep_log_as)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- log -------------------------------------------------------------------------------
    def log_text(self):
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def last_error(self, log=None):
        """The exception line ending the log's last traceback, or 'none'."""
        log = self.log_text() if log is None else log
        at = log.rfind("Traceback (most recent call last):")
        if at < 0:
            return "none"
        return next((line for line in log[at:].splitlines()[1:] if line and not line[0].isspace()), "none")

    def worker_death(self):
        """The exception that ended the host's prompt worker thread, or None while it lives. Python's
        threading excepthook logs it as 'Exception in thread NAME (prompt_worker):' and its traceback."""
        log = self.log_text()
        death = WORKER_DEATH.search(log)
        return None if death is None else self.last_error(log[death.start():])

    def log_excerpt(self, lines=60):
        return f"\n--- last {lines} lines of {self.log_path} ---\n{self.log_tail(lines)}\n--- end of log ---"

    # ---- HTTP ------------------------------------------------------------------------------
    def _request(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            ctype = resp.headers.get("Content-Type", "")
        return json.loads(raw) if "json" in ctype else raw

    def get(self, path, timeout=30):
        return self._request("GET", path, timeout=timeout)

    def object_info(self, node_class=None):
        info = self.get("/object_info" if node_class is None else f"/object_info/{node_class}", timeout=60)
        return info if node_class is None else info.get(node_class)

    def post_prompt(self, graph) -> str:
        try:
            reply = self._request("POST", "/prompt", {"prompt": graph, "client_id": self.client_id})
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = {"error": text}
            raise PromptRejected(f"/prompt rejected the graph (HTTP {err.code}): {json.dumps(body, indent=1)}"
                                 + self.log_excerpt(20), body) from None
        return reply["prompt_id"]

    def history(self, prompt_id):
        return self.get(f"/history/{prompt_id}").get(prompt_id)

    def wait(self, prompt_id, timeout=300.0):
        """The /history entry once the prompt finishes; ExecutionFailed with the node's error text if it failed.

        Bounded: a server that exits, a prompt worker thread that died (the server then accepts prompts
        and never runs them) or ``timeout`` seconds end the wait with ServerError and the log's last error.
        """
        deadline = time.monotonic() + timeout
        entry = self.history(prompt_id)
        while entry is None:
            if not self.alive():
                raise ServerError(f"the server exited while prompt {prompt_id} was queued" + self.log_excerpt())
            if (death := self.worker_death()) is not None:
                raise ServerError(f"the host's prompt worker thread died ({death}): prompt {prompt_id} can never "
                                  "run on this server" + self.log_excerpt())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerError(f"prompt {prompt_id} did not finish in {timeout:.0f} s; last error in the server "
                                  f"log: {self.last_error()}" + self.log_excerpt())
            try:  # at most a second at a time, to notice a server or worker that died
                message = self.ws.receive(timeout=min(remaining, 1.0))
            except (OSError, ValueError, websocket.WebSocketException) as err:
                raise ServerError(f"the websocket failed while waiting for prompt {prompt_id}: {err}"
                                  + self.log_excerpt()) from None
            data = (message or {}).get("data") or {}
            if message and message.get("type") == "executing" and data.get("node") is None \
                    and data.get("prompt_id") == prompt_id:
                entry = self.history(prompt_id)
                if entry is None:
                    raise ServerError(f"prompt {prompt_id} finished but /history has no entry" + self.log_excerpt())
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            error = next((data for event, data in status.get("messages", []) if event == "execution_error"), {})
            raise ExecutionFailed(
                f"prompt {prompt_id} failed in node {error.get('node_id')} ({error.get('node_type')}): "
                f"{error.get('exception_type')}: {error.get('exception_message')}" + self.log_excerpt(30),
                entry, error)
        return entry

    def run(self, graph, timeout=300.0):
        return self.wait(self.post_prompt(graph), timeout)

    def output_paths(self, entry) -> dict[str, list[pathlib.Path]]:
        """Files named in a history entry's outputs, by output node id (images, animated images, videos)."""
        # main.py puts temp files in <--temp-directory>/temp.
        roots = {"output": self.output_dir, "temp": self.temp_dir / "temp", "input": self.input_dir}
        found = {}
        for node_id, outputs in entry.get("outputs", {}).items():
            for kind, items in outputs.items():
                if not isinstance(items, list):
                    continue
                for item in items:
                    if isinstance(item, dict) and "filename" in item:
                        root = roots.get(item.get("type", "output"), self.output_dir)
                        found.setdefault(node_id, []).append(root / item.get("subfolder", "") / item["filename"])
        return found


def make_input_image(path: pathlib.Path, width=96, height=64) -> pathlib.Path:
    """A deterministic RGB PNG with structure (gradient, a red disc, a blue bar) for LoadImage."""
    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width]
    cx, cy, r = width * 0.72, height * 0.47, min(width, height) * 0.28
    pixels = np.stack([255 * x // max(width - 1, 1), 255 * y // max(height - 1, 1), np.full_like(x, 96)], -1)
    pixels[(width * 0.1 <= x) & (x <= width * 0.45) & (height * 0.6 <= y) & (y <= height * 0.8)] = (20, 30, 200)
    pixels[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = (230, 40, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


if __name__ == "__main__":  # manual smoke run: start, print /system_stats, stop
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, ComfyServer(tmp) as srv:
        print(json.dumps(srv.get("/system_stats"), indent=1))
        print(f"started in {srv.startup_seconds:.1f} s", file=sys.stderr)
