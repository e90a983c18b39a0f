"""Finding the videos --videos points at: folders by extension and content, files, globs, standard input."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from pipeline.discovery import VIDEO_EXTENSIONS, find_videos, looks_like_video
from pipeline.errors import UsageError
from videos import make_audio_only, make_video


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of videos in nested folders, a copy without extension, and files that are not videos."""
    root = tmp_path_factory.mktemp("tree")
    clip = make_video(root / "a.mp4", frames=4)
    (root / "deep" / "er").mkdir(parents=True)
    make_video(root / "deep" / "er" / "b.MKV", frames=4)
    shutil.copy(clip, root / "deep" / "no_extension")
    (root / "broken.webm").write_text("not a video, but named as one: its row fails when scored")
    (root / "notes.txt").write_text("filename,mos\n")
    make_audio_only(root / "sound.m4a", seconds=0.2).rename(root / "sound.bin")  # ISO media holding sound only
    shutil.copy(clip, root / ".hidden.mp4")
    (root / ".cache").mkdir()
    shutil.copy(clip, root / ".cache" / "c.mp4")
    return root


def test_folder_by_extension_and_content(tree):
    assert find_videos([str(tree)]) == {
        "a.mp4": str(tree / "a.mp4"),
        "broken.webm": str(tree / "broken.webm"),
        "deep/er/b.MKV": str(tree / "deep" / "er" / "b.MKV"),
        "deep/no_extension": str(tree / "deep" / "no_extension"),
    }


def test_content_sniffing(tree):
    assert looks_like_video(tree / "deep" / "no_extension")
    assert not looks_like_video(tree / "sound.bin") and not looks_like_video(tree / "notes.txt")
    assert not looks_like_video(tree / "nonexistent")


def test_keys_are_relative_to_the_folder_given(tree):
    assert list(find_videos([str(tree / "deep")])) == ["er/b.MKV", "no_extension"]


def test_a_file_is_its_own_key_even_when_missing(tree):
    given = [str(tree / "notes.txt"), "missing.mp4"]
    assert find_videos(given) == {given[0]: given[0], "missing.mp4": "missing.mp4"}  # their rows say what is wrong


def test_glob_keys_are_relative_to_its_fixed_part(tree, monkeypatch):
    assert list(find_videos([str(tree / "*" / "er" / "*.MKV")])) == ["deep/er/b.MKV"]
    assert list(find_videos([str(tree / "de*")])) == ["deep/er/b.MKV", "deep/no_extension"]  # a folder matched
    monkeypatch.chdir(tree)
    assert find_videos(["*.mp4"]) == {"a.mp4": "a.mp4"}


def test_standard_input(tree):
    stdin = io.StringIO(f"{tree / 'a.mp4'}\n\nname with spaces.mp4\r\n")
    assert list(find_videos(["-"], stdin)) == [str(tree / "a.mp4"), "name with spaces.mp4"]


def test_one_key_for_two_files_is_refused(tree, tmp_path):
    make_video(tmp_path / "a.mp4", frames=2)
    with pytest.raises(UsageError, match="key 'a.mp4' names both"):
        find_videos([str(tree), str(tmp_path)])
    assert list(find_videos([str(tree), str(tree / ".." / tree.name)])) == list(find_videos([str(tree)]))  # same files


@pytest.mark.parametrize("spec", ["empty", "empty/*.mp4"])
def test_nothing_found_is_an_error(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no videos here")
    with pytest.raises(UsageError, match="no video file.*mp4, .mpeg"):
        find_videos([str(tmp_path / spec)])


def test_readme_lists_every_extension():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = readme.split("Extensions searched for: ")[1].split("(`pipeline.discovery")[0]
    assert set(listed.replace("`", "").split()) == VIDEO_EXTENSIONS
