"""world_server over real HTTP on 127.0.0.1: every fault as documented, on a tiny made-up world."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from PIL import Image, UnidentifiedImageError

from openimages_pipe.errors import InputError
from openimages_pipe.world.faults import Fault, fate, is_transient, parse_fault_spec
from openimages_pipe.world.layout import (
    PLACEHOLDER_PATH,
    WorldPaths,
    base_url,
    free_port,
    mirror_url,
    original_url,
    thumbnail_url,
)
from openimages_pipe.world.responses import reencode
from openimages_pipe.world.server import ServeConfig, WorldServer, run
from tests.fixtures.images import encode
from tests.fixtures.worlds import Served, served_bytes, write_world

SEED = 1234
MB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("no_errors_logged")  # tests/conftest.py


@dataclass(frozen=True)
class TinyImage:
    image_id: str
    original: str  # URL paths
    thumbnail: str
    mirror: str
    ext: str


@dataclass(frozen=True)
class TinyWorld:
    root: Path
    port: int
    images: tuple[TinyImage, ...]

    def file(self, path: str) -> bytes:
        """The bytes routes.csv puts behind a URL path."""
        return served_bytes(self.root, path)


def picture(color: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    image = Image.new("RGB", size, color)
    image.paste((255 - color[0], color[1], 90), (4, 4, size[0] // 2, size[1] // 2))
    return encode(image, fmt, **({"quality": 92} if fmt == "JPEG" else {}))


def make_world(root: Path, port: int) -> TinyWorld:
    """world.json, routes.csv and small images for two ImageIDs, one with a PNG original."""
    paths = WorldPaths(root)
    routes, images = [], []
    for n, (image_id, ext) in enumerate([("000002b66c9c498e", "jpg"), ("000a1249af2bc5f0", "png")]):
        color = (40 * n + 30, 120, 200 - 50 * n)
        image = TinyImage(
            image_id,
            original=original_url("", 3, 2467 + n, 3654456151 + n, "a8c2b5a1e5", ext),
            thumbnail=thumbnail_url("", 3, 2467 + n, 3654456151 + n, "5f1c0a2b9d"),
            mirror=mirror_url("", "validation", image_id),
            ext=ext,
        )
        for kind, url, file, size in [
            ("original", image.original, paths.original(image_id, ext), (96, 64)),
            ("thumbnail", image.thumbnail, paths.thumbnail(image_id), (48, 32)),
            ("mirror", image.mirror, paths.mirror("validation", image_id), (64, 40)),
        ]:
            fmt = "PNG" if file.suffix == ".png" else "JPEG"
            data = picture(color, size, fmt)
            routes.append(Served(url, image_id, kind, file, data, f"image/{fmt.lower()}"))
        images.append(image)
    placeholder = picture((200, 200, 200), (24, 18), "PNG")
    write_world(root, base_url(port=port), routes, seed=SEED, placeholder=placeholder)
    return TinyWorld(root, port, tuple(images))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return make_world(tmp_path_factory.mktemp("world"), free_port())


def serve(world: TinyWorld, faults: str, **kwargs: object) -> WorldServer:
    return WorldServer(replace(ServeConfig(world.root, port=0, faults=faults), **kwargs))


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str
    history: tuple[int, ...]
    seconds: float


def get(url: str, *, total: float = 5.0, sock_read: float | None = None, **kwargs: object) -> Reply:
    """One GET on a fresh session (no pooled connection hides a fault), bounded by `total`."""

    async def fetch() -> Reply:
        timeout = aiohttp.ClientTimeout(total=total, sock_read=sock_read)
        start = time.monotonic()
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, **kwargs) as resp,  # type: ignore[arg-type]
        ):
            body = await resp.read()
            history = tuple(r.status for r in resp.history)
            headers = dict(resp.headers)
            return Reply(
                resp.status, headers, body, str(resp.url), history, time.monotonic() - start
            )

    return asyncio.run(fetch())


def raw_get(url: str, timeout: float = 5.0) -> tuple[dict[str, str], bytes]:
    """Headers and body as sent, read until the server closes, for bodies aiohttp would refuse."""
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    chunks = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request.encode())
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head:
        return {}, b""
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return {"status": lines[0].split()[1], **headers}, body


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_healthy_world_serves_every_route(world: TinyWorld) -> None:
    with serve(world, "none") as srv:
        for image in world.images:
            for path in (image.original, image.thumbnail, image.mirror):
                reply = get(srv.base_url + path)
                assert reply.status == 200
                assert reply.body == world.file(path)
                assert int(reply.headers["Content-Length"]) == len(reply.body)
        png = get(srv.base_url + world.images[1].original)
        assert png.headers["Content-Type"] == "image/png"
        assert get(srv.base_url + world.images[0].original).headers["Content-Type"] == "image/jpeg"
        placeholder = get(srv.base_url + PLACEHOLDER_PATH)
        assert placeholder.status == 200
        assert placeholder.headers["Content-Type"] == "image/png"
        assert placeholder.body == WorldPaths(world.root).placeholder.read_bytes()


@pytest.mark.parametrize(
    "path", ["/open-images-dataset/validation/ffffffffffffffff.jpg", "/nowhere", "/"]
)
def test_unknown_paths_are_404(world: TinyWorld, path: str) -> None:
    with serve(world, "none") as srv:
        assert get(srv.base_url + path).status == 404
        assert srv.request_count(path) == 1


@pytest.mark.parametrize(("faults", "status"), [("404=1", 404), ("410=1", 410), ("403=1", 403)])
def test_permanent_status_faults_never_recover(world: TinyWorld, faults: str, status: int) -> None:
    image = world.images[0]
    with serve(world, faults) as srv:
        assert [get(srv.base_url + image.original).status for _ in range(4)] == [status] * 4
        assert get(srv.base_url + image.thumbnail).status == status  # every size shares the fate
        assert srv.request_count(image.original) == 4


@pytest.mark.parametrize(
    ("faults", "status", "failures"),
    [("429=1", 429, 2), ("500=1", 500, 2), ("503=1", 503, 2), ("503=1,transient=3", 503, 3)],
)
def test_transient_status_faults_recover(
    world: TinyWorld, faults: str, status: int, failures: int
) -> None:
    image = world.images[0]
    with serve(world, faults) as srv:
        replies = [get(srv.base_url + image.original) for _ in range(failures + 1)]
        assert [r.status for r in replies] == [status] * failures + [200]
        assert replies[-1].body == world.file(image.original)
        if status == 429:
            assert all(r.headers["Retry-After"] == "1" for r in replies[:-1])
        # Attempts count per URL: the thumbnail still fails its first request.
        assert get(srv.base_url + image.thumbnail).status == status
        assert srv.request_count(image.original) == failures + 1


def test_placeholder_redirects_to_a_png(world: TinyWorld) -> None:
    image = world.images[0]
    with serve(world, "placeholder=1") as srv:
        for path in (image.original, image.thumbnail):
            reply = get(srv.base_url + path)
            assert reply.history == (302,)
            assert reply.status == 200
            assert reply.url == srv.base_url + PLACEHOLDER_PATH
            assert reply.headers["Content-Type"] == "image/png"
            assert reply.body == WorldPaths(world.root).placeholder.read_bytes()


def test_slow_first_byte_times_out_a_hasty_client_only(world: TinyWorld) -> None:
    image = world.images[0]
    with serve(world, "slow_first_byte=1,slow=0.6") as srv:
        with pytest.raises(asyncio.TimeoutError):
            get(srv.base_url + image.original, total=0.2)
        patient = get(srv.base_url + image.original, total=5.0)  # second and last slow attempt
        assert patient.status == 200
        assert patient.body == world.file(image.original)
        assert patient.seconds >= 0.5
        assert get(srv.base_url + image.original).seconds < 0.5  # the fault has run out


def test_stall_times_out_a_short_read_timeout_only(world: TinyWorld) -> None:
    image = world.images[0]
    with serve(world, "stall_midway=1,stall=0.6") as srv:
        with pytest.raises(asyncio.TimeoutError):
            get(srv.base_url + image.original, sock_read=0.2)
        patient = get(srv.base_url + image.original, sock_read=3.0)
        assert patient.body == world.file(image.original)
        assert patient.seconds >= 0.5
        assert get(srv.base_url + image.original, sock_read=0.2).status == 200


def test_truncated_sends_less_than_its_content_length(world: TinyWorld) -> None:
    image = world.images[0]
    expected = world.file(image.original)
    with serve(world, "truncated=1") as srv:
        headers, body = raw_get(srv.base_url + image.original)
        assert headers["status"] == "200"
        assert int(headers["Content-Length"]) == len(expected)
        assert 0 < len(body) < len(expected)
        assert body == expected[: len(body)]
        with pytest.raises(aiohttp.ClientPayloadError):
            get(srv.base_url + image.original)
        assert get(srv.base_url + image.original).body == expected  # third attempt
        assert srv.request_count(image.original) == 3


def raw_get_or_reset(url: str) -> tuple[dict[str, str], bytes]:
    try:
        return raw_get(url)
    except ConnectionResetError:
        return {}, b""


def test_reset_drops_the_connection_before_any_response(world: TinyWorld) -> None:
    image = world.images[1]
    with serve(world, "reset=1,transient=3") as srv:
        url = srv.base_url + image.original
        assert [raw_get_or_reset(url) for _ in range(3)] == [({}, b"")] * 3
        headers, body = raw_get(url)
        assert headers["status"] == "200"
        assert body == world.file(image.original)
        # aiohttp itself retries an idempotent GET once on a dropped connection, so one call
        # may use two of the three failures: hence a fresh URL for it.
        with pytest.raises(aiohttp.ClientConnectionError):
            get(srv.base_url + world.images[0].original)
        assert 1 <= srv.request_count(world.images[0].original) <= 2


def test_html_is_a_page_not_an_image(world: TinyWorld) -> None:
    with serve(world, "html=1") as srv:
        reply = get(srv.base_url + world.images[0].original)
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/html")
        assert b"<html" in reply.body
        with pytest.raises(UnidentifiedImageError):
            Image.open(io.BytesIO(reply.body))


@pytest.mark.parametrize("index", [0, 1])
def test_changed_is_the_same_picture_in_other_bytes(world: TinyWorld, index: int) -> None:
    image = world.images[index]
    original = world.file(image.original)
    with serve(world, "changed=1") as srv:
        first = get(srv.base_url + image.original)
        again = get(srv.base_url + image.original)
    assert first.status == 200
    assert first.body == again.body  # deterministic
    assert md5(first.body) != md5(original)
    assert len(first.body) != len(original)
    assert first.headers["Content-Type"] == ("image/png" if image.ext == "png" else "image/jpeg")
    with Image.open(io.BytesIO(first.body)) as changed, Image.open(io.BytesIO(original)) as ref:
        changed.load()
        assert (changed.size, changed.format) == (ref.size, ref.format)


def test_reencode_is_deterministic_and_always_differs() -> None:
    png = picture((1, 2, 3), (8, 8), "PNG")
    assert reencode(png) == reencode(png)
    assert len(reencode(png)) != len(png)
    assert Image.open(io.BytesIO(reencode(png))).size == (8, 8)


def test_redirect_loop_never_lands(world: TinyWorld) -> None:
    image = world.images[0]
    with serve(world, "redirect_loop=1") as srv:
        first = get(srv.base_url + image.original, allow_redirects=False)
        assert first.status == 302
        assert first.headers["Location"] == image.original + "?loop=1"
        second = get(srv.base_url + first.headers["Location"], allow_redirects=False)
        assert second.headers["Location"] == image.original
        with pytest.raises(aiohttp.TooManyRedirects):
            get(srv.base_url + image.original, max_redirects=4)
        assert srv.request_count(image.original) <= 2 + 5


def test_huge_streams_without_end_and_survives_a_hang_up(world: TinyWorld) -> None:
    image = world.images[0]

    async def read_prefix(url: str, limit: int) -> tuple[dict[str, str], bytes, int]:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            head, received = b"", 0
            async for chunk in resp.content.iter_chunked(1 << 16):  # ends at the server's cap
                head = head or chunk[:4]
                received += len(chunk)
                if received >= limit:
                    break  # hang up mid-body, as a downloader with a size cap does
            return dict(resp.headers), head, received

    with serve(world, "huge=1") as srv:
        headers, head, received = asyncio.run(read_prefix(srv.base_url + image.original, 20 * MB))
        assert received >= 20 * MB
        assert "Content-Length" not in headers
        assert headers["Content-Type"] == "image/jpeg"
        assert head[:2] == b"\xff\xd8"
        assert get(srv.base_url + image.mirror).status == 200  # the server survived
        assert srv.request_count(image.original) == 1


def test_huge_ends_at_its_configured_size(world: TinyWorld) -> None:
    with serve(world, "huge=1,huge_mb=1") as srv:
        reply = get(srv.base_url + world.images[1].thumbnail)
    assert MB <= len(reply.body) <= MB + 64 * 1024 + 64


@pytest.mark.parametrize("faults", ["404=1", "reset=1", "huge=1", "placeholder=1", "all"])
def test_the_mirror_ignores_fates(world: TinyWorld, faults: str) -> None:
    with serve(world, faults) as srv:
        for image in world.images:
            assert get(srv.base_url + image.mirror).body == world.file(image.mirror)


def test_truth_has_one_row_per_image_matching_fate(world: TinyWorld, tmp_path: Path) -> None:
    truth = tmp_path / "truth" / "faults.csv"
    with serve(world, "all", fault_seed=7, truth=truth) as srv:
        spec = parse_fault_spec("all")
        expected = {image.image_id: fate(7, image.image_id, spec) for image in world.images}
        assert srv.fates == expected
        srv.write_truth(tmp_path / "again.csv")
    rows = list(csv.DictReader(truth.read_text().splitlines()))
    assert [r["image_id"] for r in rows] == sorted(expected)
    for row in rows:
        assert Fault(row["fault"]) is expected[row["image_id"]]
        assert row["transient"] == str(int(is_transient(expected[row["image_id"]])))
    assert (tmp_path / "again.csv").read_text() == truth.read_text()


def test_defaults_come_from_world_json(world: TinyWorld) -> None:
    """port=None binds the port the world's URLs were written for; the fault seed is the world's."""
    spec = parse_fault_spec("all")
    with WorldServer(ServeConfig(world.root, faults="all")) as srv:
        assert srv.base_url == base_url(port=world.port)
        image = world.images[0]
        assert srv.fates[image.image_id] is fate(SEED, image.image_id, spec)
        assert get(base_url(port=world.port) + image.mirror).status == 200
    with serve(world, "all", fault_seed=SEED + 1) as other:
        seeds_differ = {i.image_id: fate(SEED + 1, i.image_id, spec) for i in world.images}
        assert other.fates == seeds_differ


def test_run_serves_until_ctrl_c(
    world: TinyWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = base_url(port=port) + world.images[0].original
    seen: list[int] = []

    def request_then_interrupt() -> None:
        for _ in range(250):  # up to 5 s for the server to come up
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as exc:
                seen.append(exc.code)
                break
            except OSError:
                time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=request_then_interrupt)
    thread.start()
    run(ServeConfig(world.root, port=port, faults="410=1", truth=tmp_path / "t.csv"))
    thread.join(5)
    out = capsys.readouterr().out
    assert seen == [410]
    assert base_url(port=port) in out
    assert "410=100.00%" in out
    assert "stopped" in out
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + len(world.images)


def test_a_busy_port_is_named(world: TinyWorld) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        busy_port = pytest.raises(InputError, match=f"127.0.0.1:{port}.*another port")
        with busy_port, serve(world, "none", port=port):
            pass


def test_bad_route_kind_names_the_line_and_the_valid_kinds(tmp_path: Path) -> None:
    bad = make_world(tmp_path / "bad", free_port())
    routes = WorldPaths(bad.root).routes
    lines = routes.read_text().splitlines()
    lines[2] = lines[2].replace(",thumbnail,", ",thumb,")
    routes.write_text("\n".join(lines) + "\n")
    expected = r"routes\.csv:3: unknown route kind; valid: original, thumbnail, mirror.*'thumb'"
    with pytest.raises(InputError, match=expected), WorldServer(ServeConfig(bad.root, port=0)):
        pass


def test_a_directory_without_world_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no world.json.*world make"):
        run(ServeConfig(tmp_path))


def test_bad_fault_text_fails_before_serving(world: TinyWorld) -> None:
    with pytest.raises(InputError, match="'404=lots'"), serve(world, "404=lots"):
        pass
