"""The model zoo: the catalogue against ../shared/zoo's table, and downloads against a local HTTP server that
redirects, answers like Google Drive's confirmation page, drops connections, ignores Range requests and
serves wrong bytes — never the internet."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import threading
import urllib.parse
import zipfile
from dataclasses import replace

import pytest

import archs
from sr import download, zoo
from sr.cli import main

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


class Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    drop_after: int | None = None  # close the first response after this many bytes
    honour_range: bool = True
    log: list[tuple[str, str | None]]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urllib.parse.urlsplit(self.path)
        self.server.log.append((self.path, self.headers.get("Range")))
        if url.path.startswith("/moved/"):
            self._reply(302, b"", {"Location": self.path.replace("/moved/", "/files/", 1)})
        elif (
            url.path == "/download"
        ):  # Google Drive's endpoint: a warning page first, the file once confirmed
            query = dict(urllib.parse.parse_qsl(url.query))
            if query.get("confirm") != "t" or query.get("uuid") != "u-1":
                page = (
                    "<html><body>Google Drive can't scan this file for viruses."
                    '<form id="download-form" action="/download" method="get">'
                    f'<input type="hidden" name="id" value="{query.get("id")}">'
                    '<input type="hidden" name="export" value="download">'
                    '<input type="hidden" name="confirm" value="t">'
                    '<input type="hidden" name="uuid" value="u-1"></form></body></html>'
                ).encode()
                self._reply(200, page, {"Content-Type": "text/html; charset=utf-8"})
            else:
                self._file(self.server.files.get(f"/files/{query['id']}"))
        else:
            self._file(self.server.files.get(url.path))

    def _file(self, data: bytes | None):
        if data is None:
            self._reply(404, b"not found", {})
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and self.server.honour_range:
            start = int(ranged.split("=")[1].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        body = data[start:]
        if self.server.drop_after is not None:
            body, self.server.drop_after = body[: self.server.drop_after], None
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _reply(self, code: int, body: bytes, headers: dict):
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_MODELS_DIR", str(tmp_path / "cache"))
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.log = {"/files/model.pth": PAYLOAD}, []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    monkeypatch.setattr(download, "DRIVE", f"{base}/download")
    yield httpd, base
    httpd.shutdown()


def entry(**changes) -> zoo.ZooEntry:
    base = zoo.ZooEntry(
        name="Test-Model",
        family="PAN",
        scale=4,
        filename="model.pth",
        description="test",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )
    return replace(base, **changes)


def test_redirects_and_drive_confirmation(server):
    httpd, base = server
    path = zoo.fetch(entry(), urls=(f"{base}/moved/model.pth",))
    assert path.read_bytes() == PAYLOAD and path == zoo.models_dir() / "model.pth"
    path.unlink()
    assert zoo.fetch(entry(), urls=("gdrive:model.pth",)).read_bytes() == PAYLOAD
    confirmed = [p for p, _ in httpd.log if "confirm=t" in p]
    assert len(confirmed) == 1 and "uuid=u-1" in confirmed[0]


def test_a_dropped_connection_resumes_where_it_stopped(server):
    httpd, base = server
    httpd.drop_after = 3000
    path = zoo.fetch(entry(), urls=(f"{base}/files/model.pth",))
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in httpd.log] == [None, "bytes=3000-"]
    assert not download.part_path(path).exists()


def test_an_interrupted_run_continues_from_its_part_file(server):
    httpd, base = server
    part = download.part_path(zoo.models_dir() / "model.pth")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:4096])  # what a killed run left
    assert zoo.fetch(entry(), urls=(f"{base}/files/model.pth",)).read_bytes() == PAYLOAD
    assert httpd.log == [("/files/model.pth", "bytes=4096-")]


def test_a_server_without_ranges_makes_it_start_over(server):
    httpd, base = server
    httpd.honour_range = False
    part = download.part_path(zoo.models_dir() / "model.pth")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes of another file")
    assert zoo.fetch(entry(), urls=(f"{base}/files/model.pth",)).read_bytes() == PAYLOAD


def test_a_wrong_hash_leaves_nothing_and_the_next_mirror_is_tried(server):
    httpd, base = server
    httpd.files["/files/other.pth"] = PAYLOAD[::-1]
    with pytest.raises(
        zoo.ZooError, match=r"Test-Model: cannot download: .*other.pth: the download has sha256"
    ):
        zoo.fetch(entry(), urls=(f"{base}/files/other.pth",))
    assert list(zoo.models_dir().iterdir()) == []
    path = zoo.fetch(entry(), urls=(f"{base}/files/other.pth", f"{base}/files/model.pth"))
    assert path.read_bytes() == PAYLOAD
    with pytest.raises(zoo.ZooError, match="HTTP 404"):
        zoo.fetch(entry(filename="absent.pth"), urls=(f"{base}/files/absent.pth",))


def test_git_blob_ids_check_files_committed_to_the_authors_repositories(server):
    _, base = server
    blob = hashlib.sha1(b"blob %d\0" % len(PAYLOAD) + PAYLOAD).hexdigest()
    url = (f"{base}/files/model.pth",)
    assert zoo.fetch(entry(sha256=None, git_sha1=blob), urls=url).read_bytes() == PAYLOAD
    (zoo.models_dir() / "model.pth").unlink()
    with pytest.raises(zoo.ZooError, match="git blob id"):
        zoo.fetch(entry(sha256=None, git_sha1="0" * 40), urls=url)


def test_a_member_of_a_zip_archive(server):
    httpd, base = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("models/model.pth", PAYLOAD)
        archive.writestr("models/other.pth", b"x")
    httpd.files["/files/models.zip"] = buffer.getvalue()
    path = zoo.fetch(entry(member="models/model.pth"), urls=(f"{base}/files/models.zip",))
    assert path.read_bytes() == PAYLOAD and (zoo.models_dir() / "models.zip").is_file()


def test_files_without_a_download_say_where_to_fetch_them(server):
    page = "https://drive.google.com/drive/folders/abc"
    with pytest.raises(zoo.ZooError, match=f"no direct download; fetch model.pth from {page} and put it in"):
        zoo.fetch(entry(page=page))
    with pytest.raises(zoo.ZooError, match="sr cannot load this file: not implemented"):
        zoo.fetch(entry(unsupported="not implemented"))


def test_the_catalogue_holds_every_official_file_of_the_table(shared_dir):
    rows = list(csv.DictReader((shared_dir / "zoo" / "official_checkpoints.tsv").open(), delimiter="\t"))
    official = [r for r in rows if not r["name"].startswith("community:")]
    assert len(official) == len(zoo.ZOO) == 99
    assert {r["name"] for r in official} == {e.name for e in zoo.ZOO.values()}
    by_name = {r["name"]: r for r in official}
    families = {f.name for f in archs.FAMILIES}
    for e in zoo.ZOO.values():
        row = by_name[e.name]
        assert (e.family, e.scale) == (row["family"], int(row["scale"]))
        if e.sha256:  # pinned only from two sources, from official bytes, or OpenModelDB for SwinIR
            source = row["sha256_source"]
            assert e.sha256 == row["sha256"]
            assert (
                ";" in source
                or "computed here" in source
                or (e.family == "SwinIR" and "OpenModelDB" in source)
            )
        assert e.unsupported or e.family in families
        assert e.urls or e.page or e.unsupported
        assert e.non_commercial == (e.family == "SRFormer")
    sums = dict(
        line.split()[::-1] for line in (shared_dir / "weights" / "SHA256SUMS").read_text().splitlines()
    )
    for name in ("PAN-x2", "PAN-x3", "PAN-x4"):  # independent truth: the files beside the project
        e = zoo.lookup(name)
        assert sums[f"PAN/{e.filename}"] == e.sha256


def test_sr_models_filters_and_downloads(server, shared_dir, monkeypatch, capsys):
    httpd, base = server
    pan = (shared_dir / "weights" / "PAN" / "PANx3_DF2K.pth").read_bytes()
    httpd.files["/files/PANx3_DF2K.pth"] = pan
    monkeypatch.setitem(
        zoo.ZOO, "pan-x3", replace(zoo.lookup("PAN-x3"), urls=(f"{base}/files/PANx3_DF2K.pth",))
    )
    assert main(["models", "--task", "jpeg"]) == 0
    out = capsys.readouterr().out
    assert "8 of 99 official files" in out and "SwinIR-colorJPEG-q10" in out and "PAN-x3" not in out
    assert main(["models", "--family", "srformer", "--scale", "4"]) == 0
    out = capsys.readouterr().out
    assert "NON-COMMERCIAL use only" in out and "SRFormer-x4 " in out and "SRFormer-x2 " not in out
    assert main(["models", "--download", "PAN-x3", "no-such-model"]) == 1
    captured = capsys.readouterr()
    assert "PAN-x3: " in captured.out and "(PAN x3, verified)" in captured.out
    assert "no-such-model: not a zoo model" in captured.err
    assert main(["models", "--downloaded"]) == 0
    out = capsys.readouterr().out
    assert "1 of 99 official files" in out and "PAN-x3" in out and "cached" in out
