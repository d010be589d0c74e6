"""Start a box and Open WebUI next to it (offline), then run the client checks against them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.live import REPO, LiveBox, free_port

CLIENTS = REPO / ".cache" / "clients"
MODEL = "smollm2:135m"


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="clients-"))
    with LiveBox(work / "home", plugins="llama") as box:
        port = free_port()
        webui = subprocess.Popen(
            [
                str(CLIENTS / "openwebui" / "bin" / "open-webui"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={
                **os.environ,
                "DATA_DIR": str(work / "openwebui"),
                "WEBUI_AUTH": "False",
                "WEBUI_SECRET_KEY": "appliance-client-test",
                "OLLAMA_BASE_URL": box.url,
                "OPENAI_API_BASE_URL": box.url + "/v1",
                "OPENAI_API_KEY": "unused",
                "OFFLINE_MODE": "True",
                "HF_HUB_OFFLINE": "1",
                "RAG_EMBEDDING_ENGINE": "ollama",
                "RAG_EMBEDDING_MODEL": "all-minilm:l6-v2",
                "RAG_OLLAMA_BASE_URL": box.url,
                "ENABLE_VERSION_UPDATE_CHECK": "False",
            },
            stdout=(work / "openwebui.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        failed = 0
        try:
            wait_for(f"http://127.0.0.1:{port}/health", 300)
            checks = [
                [
                    str(CLIENTS / "openwebui" / "bin" / "python"),
                    str(REPO / "tests" / "clients" / "openwebui_chat.py"),
                    f"http://127.0.0.1:{port}",
                    box.url,
                    MODEL,
                ],
                ["node", str(CLIENTS / "node" / "node_clients.mjs")],
            ]
            shutil.copy(REPO / "tests" / "clients" / "node_clients.mjs", CLIENTS / "node")
            for command in checks:
                result = subprocess.run(command, env={**os.environ, "BOX_URL": box.url})
                failed += result.returncode != 0
        finally:
            webui.send_signal(signal.SIGTERM)
            webui.wait(timeout=60)
    print("client checks:", "all passed" if not failed else f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
