"""Loopback stand-ins for the internet: a file server (the data releases) and a model hub (huggingface.co, as
huggingface_hub talks to it through HF_ENDPOINT). They serve on 127.0.0.1, port 0, from a thread."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class _Server:
    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.requests: list[str] = []  # "METHOD path" of every request
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FileServer(_Server):
    """Serves ``files`` (name -> bytes) at /<name>. ``truncate`` (names): the response announces the whole
    length, sends half and closes the connection, as a dropped download does."""

    def __init__(self, files: dict[str, bytes], truncate=()):
        self.files, self.truncate = dict(files), set(truncate)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(f"GET {self.path}")
                name = unquote(urlparse(self.path).path.lstrip("/"))
                data = outer.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if name in outer.truncate:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        super().__init__(Handler)


class HubServer(_Server):
    """The part of the Hugging Face hub API that ``snapshot_download`` uses, for model repos held in local
    folders (``repos``: repo id -> folder). Each repo has one commit, a fixed fake sha; ``gated`` repo ids
    answer 401 with the hub's gated-repo error code."""

    def __init__(self, repos: dict[str, Path], gated=()):
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.gated = set(gated)
        self.commits = {k: hashlib.sha1(k.encode()).hexdigest() for k in self.repos}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, obj, status=200, headers=None):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _repo(self, parts):
                for repo in outer.repos:
                    n = len(repo.split("/"))
                    if "/".join(parts[:n]) == repo:
                        return repo, parts[n:]
                return None, parts

            def _handle(self):
                outer.requests.append(f"{self.command} {self.path}")
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                api = parts[:2] == ["api", "models"]
                repo, rest = self._repo(parts[2:] if api else parts)
                if any("/".join(parts[2:] if api else parts).startswith(g) for g in outer.gated):
                    return self._json({"error": "gated"}, 401,
                                      {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted"})
                if repo is None:
                    return self._json({"error": "Repository not found"}, 404,
                                      {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                folder, commit = outer.repos[repo], outer.commits[repo]
                files = sorted(p for p in folder.rglob("*") if p.is_file())
                if api and (rest[:1] == ["revision"] or not rest):
                    return self._json({"id": repo, "modelId": repo, "sha": commit, "private": False,
                                       "siblings": [{"rfilename": str(p.relative_to(folder))} for p in files]})
                if api and rest[:1] == ["tree"]:
                    return self._json([{"type": "file", "path": str(p.relative_to(folder)), "size": p.stat().st_size,
                                        "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in files])
                if rest[:1] == ["resolve"] and len(rest) >= 3:
                    path = folder / "/".join(rest[2:])
                    if not path.is_file():
                        return self._json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
                    data = path.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Repo-Commit", commit)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                return self._json({"error": "not served here"}, 404)

            do_GET = do_HEAD = _handle

        super().__init__(Handler)
