"""Names from clients: group names checked at submit, download names in any script (RFC 6266 Content-Disposition)."""

from __future__ import annotations

import io
import json
import urllib.parse
import zipfile

import pytest

from stemtf.serve.names import content_disposition, group_name_problem

from conftest import music_like
from test_web import audio_bytes, form, request, separator, wait_until  # noqa: F401 (fixture)
from web_server import running_server


def submit_groups(url, groups, filename="song.wav"):
    fields = [("model", None, b"tiny"), *[("group", None, group.encode()) for group in groups],
              ("file", filename, audio_bytes(music_like(4000)))]
    body, content_type = form(fields)
    status, _, answer = request(f"{url}/v1/jobs", body=body, headers={"Content-Type": content_type})
    return status, json.loads(answer)


def disposition(headers) -> str:
    return {name.lower(): value for name, value in headers.items()}["content-disposition"]


def filename_star(header: str) -> str:
    """The file name a browser takes from a Content-Disposition header (``filename*`` first)."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "filename*":
            charset, _, encoded = value.partition("''")
            assert charset == "UTF-8"
            return urllib.parse.unquote(encoded)
    return header.split('filename="', 1)[1].rstrip('"')


def test_any_script_in_group_and_file_names_downloads_with_rfc6266_headers(separator, tmp_path):
    with running_server({"tiny": separator}, tmp_path / "cache") as (url, _):
        status, created = submit_groups(url, ["é🎵=vocals,drums"], filename='mé "live".wav')
        assert status == 202, created
        done = wait_until(url, created["id"])
        assert done["status"] == "done" and done["stem_names"] == ["é🎵", "other"], done
        stem = done["stems"][0]
        assert stem["name"] == "é🎵"
        status, headers, data = request(url + urllib.parse.quote(stem["wav"]))
        assert status == 200 and data[:4] == b"RIFF"
        header = disposition(headers)
        header.encode("ascii")  # the raw name in a header made this a 500
        assert filename_star(header) == 'mé "live"_é🎵.wav' and 'filename="m___live.wav"' in header
        status, headers, data = request(f"{url}{done['zip']}")
        assert status == 200 and filename_star(disposition(headers)) == 'mé "live"_stems.zip'
        assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == ["other.wav", "é🎵.wav"]


@pytest.mark.parametrize(("group", "pattern"), [
    ("a\0b=vocals,drums", "cannot be in a file name"),
    ("line\nbreak=vocals,drums", "cannot be in a file name"),
    ("x" * 300 + "=vocals,drums", "is 300 characters long; use at most 64"),
    (".hidden=vocals,drums", "no leading dot"),
    ("a/b=vocals,drums", "cannot name a file"),
])
def test_bad_group_names_are_refused_at_submit(separator, tmp_path, group, pattern):
    with running_server({"tiny": separator}, tmp_path / "cache") as (url, manager):
        status, answer = submit_groups(url, [group])
        assert status == 400 and answer["kind"] == "bad_groups" and pattern in answer["error"], answer
        assert list(manager.uploads_dir.iterdir()) == [] and list(manager.jobs_dir.iterdir()) == []


def test_content_disposition_escapes_quotes_and_keeps_plain_names_plain():
    assert content_disposition("song_vocals.wav") == 'attachment; filename="song_vocals.wav"'
    header = content_disposition('a"b\\c_stems.zip')
    assert header.startswith('attachment; filename="a_b_c_stems.zip"; filename*=UTF-8\'\'') and filename_star(header) == 'a"b\\c_stems.zip'
    assert group_name_problem({"é🎵": ["vocals"], "accompaniment": ["drums"]}) is None
