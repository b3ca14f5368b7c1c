"""Finding, checking and caching public data: registry files read without unpacking tools,
checksums enforced, and a missing source reported with the command that fetches it.

Uses a made-up source (two small files) so that nothing here needs the real data.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from calibopt.datasets.public import sources
from calibopt.datasets.public.sources import PublicDataError, Source, locate
from calibopt.matrix.areas import shared_prior
from calibopt.matrix.columns import ColumnMap

FILES = {"a.csv": b"x,y\n1,2\n", "b.txt": b"hello\n"}
DIGESTS = {k: hashlib.sha256(v).hexdigest() for k, v in FILES.items()}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    source = Source(
        name="fake",
        release="fake 1.0",
        files=DIGESTS,
        member_dir="pkg/data",
        archive_glob="fake-*.whl",
        fetch_commands=("pip download fake==1.0",),
    )
    monkeypatch.setitem(sources.SOURCES, "fake", source)
    monkeypatch.setenv("CALIBOPT_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return source


def _tar_bytes(members: dict[str, bytes], mode: str = "w:xz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _deb(path: Path, members: dict[str, bytes]) -> None:
    """A minimal Debian package: an ar archive with debian-binary and data.tar.xz."""
    parts = {"debian-binary": b"2.0\n", "data.tar.xz": _tar_bytes(members)}
    out = bytearray(b"!<arch>\n")
    for name, data in parts.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))


def test_missing_source_names_the_fetch_command(fake):
    with pytest.raises(PublicDataError) as info:
        locate("fake")
    text = str(info.value)
    assert "python -m calibopt.datasets.public fetch fake" in text
    assert "pip download fake==1.0" in text
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("kind", ["whl", "deb", "sdist", "folder"])
def test_registry_files_fill_the_cache(fake, tmp_path, kind):
    members = {f"pkg/data/{k}": v for k, v in FILES.items()}
    if kind == "whl":
        path = tmp_path / "fake-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    elif kind == "deb":
        path = tmp_path / "fake_1.0_all.deb"
        _deb(path, {f"./{k}": v for k, v in members.items()})
    elif kind == "sdist":
        path = tmp_path / "fake-1.0.tar.gz"
        path.write_bytes(_tar_bytes(members, "w:gz"))
    else:
        path = tmp_path / "unpacked"
        for name, data in members.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    folder = locate("fake", path)
    assert folder == tmp_path / "cache" / "fake"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == FILES
    assert locate("fake") == folder  # a cache hit now, without the archive


def test_archive_in_the_current_folder_is_found(fake, tmp_path):
    with zipfile.ZipFile(tmp_path / "fake-1.0-py3-none-any.whl", "w") as z:
        for name, data in FILES.items():
            z.writestr(f"pkg/data/{name}", data)
    assert (locate("fake") / "b.txt").read_bytes() == FILES["b.txt"]


def test_other_release_is_refused(fake, tmp_path):
    path = tmp_path / "other"
    (path / "pkg/data").mkdir(parents=True)
    (path / "pkg/data/a.csv").write_bytes(b"x,y\n1,3\n")
    (path / "pkg/data/b.txt").write_bytes(FILES["b.txt"])
    with pytest.raises(PublicDataError, match=r"a\.csv from .* has SHA-256"):
        locate("fake", path)
    assert not (tmp_path / "cache" / "fake").exists()


def test_altered_cache_is_refused(fake, tmp_path):
    cache = tmp_path / "cache" / "fake"
    cache.mkdir(parents=True)
    (cache / "a.csv").write_bytes(b"changed")
    (cache / "b.txt").write_bytes(FILES["b.txt"])
    with pytest.raises(PublicDataError, match="fails its checksum"):
        locate("fake")


def test_shared_prior_closed_form():
    """d[g, h] = w_h ((1 - a) [home(h) = g] + a s_g): each unit's weights add up to w_h."""
    cols = ColumnMap(
        [1, 2, 4],
        [11, 12, 13, 14],
        level="state",
        household_weight=np.array([10.0, 20.0, 30.0, 40.0]),
        home_state=np.array([1, 2, 2, 4]),
    )
    shares = np.array([0.2, 0.5, 0.3])
    d = shared_prior(cols, shares, home_share=0.25).reshape(3, 4)
    w = np.array([10.0, 20.0, 30.0, 40.0])
    home = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(d, w * (0.25 * home + 0.75 * shares[:, None]))
    np.testing.assert_allclose(d.sum(axis=0), w)
    with pytest.raises(Exception, match="adding up to at most 1"):
        shared_prior(cols, np.array([0.5, 0.5, 0.5]))
