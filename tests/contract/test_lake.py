"""The lake contract: every engine passes the same behaviour (a local folder, and S3 as served by
moto's server over HTTP), then what the S3 engine adds (multipart uploads, other writers)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedlake.config import LakeSettings
from embedlake.errors import InputError, LakeError, NotFound
from embedlake.lake import ENGINES, Lake, ObjectEvent, open_lake
from tests.servers import S3


def s3_settings(s3: S3, **options: object) -> LakeSettings:
    """Settings of a lake in a fresh bucket of the session's S3 endpoint."""
    return LakeSettings.model_validate(
        {
            "url": f"s3://{s3.bucket()}/lake",
            "endpoint_url": s3.endpoint,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
            **options,
        }
    )


@pytest.fixture(params=sorted(ENGINES))
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    if request.param == "file":
        yield open_lake(str(tmp_path / "lake"))
    elif request.param == "s3":
        settings = s3_settings(request.getfixturevalue("s3"))
        yield open_lake(settings.url, settings)
    else:  # pragma: no cover - engines added later bring their own server fixture
        pytest.fail(f"no fixture for lake engine {request.param}")


def test_put_get_info_exists(lake: Lake) -> None:
    info = lake.put("raw/a/doc.jsonl", b"hello")
    assert info.size == 5
    assert info.etag == "5d41402abc4b2a76b9719d911017c592"  # md5, as S3 reports it
    assert lake.get("raw/a/doc.jsonl") == b"hello"
    assert lake.info("raw/a/doc.jsonl") == info
    assert lake.exists("raw/a/doc.jsonl")
    assert not lake.exists("raw/a/other.jsonl")
    with lake.open("raw/a/doc.jsonl") as f:
        assert f.read() == b"hello"


def test_put_file_streams_and_overwrites(lake: Lake) -> None:
    lake.put("k/x.bin", b"old")
    big = bytes(range(256)) * 10_000
    info = lake.put_file("k/x.bin", io.BytesIO(big))
    assert info.size == len(big)
    assert lake.get("k/x.bin") == big


def test_put_path_stores_a_file_and_takes_it(lake: Lake, tmp_path: Path) -> None:
    big = bytes(range(256)) * 10_000
    source = tmp_path / "built.bin"
    source.write_bytes(big)
    lake.put("k/x.bin", b"old")
    info = lake.put_path("k/x.bin", source)
    assert not source.exists() and info.size == len(big)
    assert lake.get("k/x.bin") == big and lake.info("k/x.bin").etag == info.etag


def test_a_local_lake_moves_a_file_on_its_filesystem_with_a_written_files_mode(
    tmp_path: Path,
) -> None:
    """Moved, not copied (the same inode: a large build's file is not written twice), and
    readable as a file written into the lake is, not owner-only as a temporary file is."""
    lake = open_lake(str(tmp_path / "lake"))
    written = Path(lake.local_path("a/written.bin") or "")
    lake.put("a/written.bin", b"x")
    source = tmp_path / "built.bin"
    source.write_bytes(b"built")
    source.chmod(0o600)
    inode = source.stat().st_ino
    lake.put_path("a/built.bin", source)
    moved = Path(lake.local_path("a/built.bin") or "")
    assert moved.stat().st_ino == inode and moved.read_bytes() == b"built"
    assert moved.stat().st_mode & 0o777 == written.stat().st_mode & 0o777


def test_list_is_sorted_recursive_and_prefix_scoped(lake: Lake) -> None:
    for key in ("b/2.txt", "a/1.txt", "a/sub/3.txt", "ab/4.txt"):
        lake.put(key, key.encode())
    assert [o.key for o in lake.list()] == ["a/1.txt", "a/sub/3.txt", "ab/4.txt", "b/2.txt"]
    assert [o.key for o in lake.list("a")] == ["a/1.txt", "a/sub/3.txt"]
    assert [o.key for o in lake.list("a/")] == ["a/1.txt", "a/sub/3.txt"]
    assert list(lake.list("missing")) == []


def test_delete(lake: Lake) -> None:
    lake.put("x/y", b"1")
    lake.delete("x/y")
    assert not lake.exists("x/y")
    with pytest.raises(NotFound):
        lake.delete("x/y")


def test_missing_objects_raise_not_found(lake: Lake) -> None:
    with pytest.raises(NotFound, match="nothing/here"):
        lake.get("nothing/here")
    with pytest.raises(NotFound):
        lake.info("nothing/here")
    with pytest.raises(NotFound):
        lake.open("nothing/here")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a/."])
def test_keys_that_could_escape_are_refused(lake: Lake, key: str) -> None:
    with pytest.raises(InputError, match="invalid lake key"):
        lake.put(key, b"x")


def test_a_symlink_planted_in_a_local_lake_is_never_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link inside the lake folder (to a file, or a folder, outside it) is no object: listings
    skip it with a warning, and reading, writing or deleting through it is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"_id": "s", "text": "secret"}\n')
    lake = open_lake(str(tmp_path / "lake"))
    lake.put("raw/a/real.jsonl", b"real")
    root = tmp_path / "lake"
    (root / "raw" / "a" / "link.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "raw" / "b").symlink_to(outside, target_is_directory=True)
    with caplog.at_level("WARNING"):
        assert [o.key for o in lake.list("raw")] == ["raw/a/real.jsonl"]
        assert [o.key for o in lake.list()] == ["raw/a/real.jsonl"]
    assert "symbolic link" in caplog.text
    for key in ("raw/a/link.jsonl", "raw/b/secret.jsonl"):
        for read in (lake.get, lake.open, lake.info, lake.exists, lake.local_path):
            with pytest.raises(InputError, match="symbolic link"):
                read(key)
        with pytest.raises(InputError, match="symbolic link"):
            lake.put(key, b"overwrite")
        with pytest.raises(InputError, match="symbolic link"):
            lake.delete(key)
    with pytest.raises(InputError, match="symbolic link"):
        list(lake.list("raw/b"))
    assert (outside / "secret.jsonl").read_text().startswith('{"_id"')  # untouched


def test_writes_and_deletes_emit_events(lake: Lake) -> None:
    seen: list[ObjectEvent] = []
    lake.subscribe(seen.append)
    lake.put("raw/s/a.jsonl", b"abc")
    lake.put_file("raw/s/b.jsonl", io.BytesIO(b"defg"))
    lake.delete("raw/s/a.jsonl")
    assert [(e.type, e.key, e.size) for e in seen] == [
        ("object.created", "raw/s/a.jsonl", 3),
        ("object.created", "raw/s/b.jsonl", 4),
        ("object.removed", "raw/s/a.jsonl", 3),
    ]
    assert seen[0].etag == "900150983cd24fb0d6963f7d28e17f72"  # md5 of "abc"
    assert len({e.id for e in seen}) == 3


def test_a_failed_write_leaves_nothing_behind(lake: Lake) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            raise OSError("disk on fire")

    with pytest.raises(Exception, match="disk on fire"):
        lake.put_file("half/written.bin", Broken())  # type: ignore[arg-type]
    assert not lake.exists("half/written.bin")
    assert list(lake.list("half")) == []


def test_listing_etags_are_empty_or_match_info(lake: Lake) -> None:
    lake.put("e/1", b"one")
    [listed] = lake.list("e")
    assert listed.etag in ("", lake.info("e/1").etag)
    assert listed.size == 3


# -- what S3 adds --------------------------------------------------------------------------------


def test_s3_a_multipart_upload_round_trips_with_the_etag_s3_reports(s3: S3) -> None:
    settings = s3_settings(s3, multipart_mb=5)
    lake = open_lake(settings.url, settings)
    seen: list[ObjectEvent] = []
    lake.subscribe(seen.append)
    data = bytes(range(256)) * (11 * 2**20 // 256)  # 11 MiB: three parts of at most 5 MiB
    info = lake.put_file("models/m/weights.bin", io.BytesIO(data))
    assert info.etag.endswith("-3")  # S3's etag of a 3-part upload, not the content's MD5
    assert lake.get("models/m/weights.bin") == data
    [listed] = lake.list("models/m")
    assert listed == lake.info("models/m/weights.bin") == info
    assert seen[0].etag == info.etag  # the runtime records this one, and compares listings with it
    assert lake.put("models/m/again.bin", data).etag == info.etag  # put takes the same path


def test_s3_an_object_written_by_another_client_is_seen_at_once(s3: S3) -> None:
    settings = s3_settings(s3)
    lake = open_lake(settings.url, settings)
    bucket = settings.url.split("/")[2]
    lake.put("raw/s/mine.jsonl", b"{}")
    assert [o.key for o in lake.list("raw/s")] == ["raw/s/mine.jsonl"]  # a listing to go stale
    assert not lake.exists("raw/s/theirs.jsonl")
    s3.client().put_object(Bucket=bucket, Key="lake/raw/s/theirs.jsonl", Body=b"theirs")
    s3.client().put_object(Bucket=bucket, Key="elsewhere/raw/s/x.jsonl", Body=b"outside")
    assert [o.key for o in lake.list("raw/s")] == ["raw/s/mine.jsonl", "raw/s/theirs.jsonl"]
    assert lake.info("raw/s/theirs.jsonl").etag == "ce97a90ef59e9c768263754682f68bd6"  # md5
    assert lake.get("raw/s/theirs.jsonl") == b"theirs"
    s3.client().delete_object(Bucket=bucket, Key="lake/raw/s/theirs.jsonl")
    assert [o.key for o in lake.list("raw/s")] == ["raw/s/mine.jsonl"]
    with pytest.raises(NotFound):
        lake.get("raw/s/theirs.jsonl")


def test_s3_a_missing_bucket_is_named(s3: S3) -> None:
    settings = s3_settings(s3)
    missing = settings.model_copy(update={"url": "s3://no-such-bucket-here/lake"})
    with pytest.raises(LakeError, match="bucket 'no-such-bucket-here' does not exist"):
        open_lake(missing.url, missing)
    lake = open_lake(settings.url, settings)
    bucket = settings.url.split("/")[2]
    s3.client().delete_bucket(Bucket=bucket)  # removed under a lake already open
    with pytest.raises(LakeError, match=f"bucket '{bucket}' does not exist"):
        lake.put("raw/s/a.jsonl", b"{}")
