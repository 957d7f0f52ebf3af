"""Tests for strix: real files in temporary folders, the WSGI app called directly."""

import io
import json
import logging
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import structlog
from PIL import Image
from webtest import TestApp

import strix

HERE = os.path.dirname(os.path.abspath(__file__))


# Fixtures and helpers ########################################################

def jpeg(width=64, height=48, colour=(90, 120, 150), description=None):
    """A real JPEG, with motion's EXIF ImageDescription when `description` is given."""
    data = io.BytesIO()
    exif = Image.Exif()
    if description:
        exif[270] = description
    Image.new("RGB", (width, height), colour).save(data, "JPEG", exif=exif)
    return data.getvalue()


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory):
    """A real one-second H.264 MP4, made once with ffmpeg."""
    path = tmp_path_factory.mktemp("video") / "tiny.m4v"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=blue:s=64x48:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-f", "mp4", str(path)], check=True)
    return path.read_bytes()


def write_motion_conf(folder, base, cameras=((1, 8081, "Front door"), (2, 8082, None)),
                      main_extra=""):
    """motion.conf plus one camera file per (camera_id, stream_port, camera_name)."""
    lines = ["picture_output on", f"picture_filename {strix.PICTURE_FILENAME}",
             f"on_event_end touch {base}/queue/Camera%t_%Y-%m-%d_%v", main_extra]
    for camera_id, port, name in cameras:
        camera_file = folder / f"camera{camera_id}.conf"
        camera_file.write_text(f"camera_id {camera_id}\ntarget_dir {base}/Camera{camera_id}\n"
                               f"stream_port {port}\n"
                               + (f"camera_name {name}\n" if name else ""))
        lines.append(f"camera {camera_file}")
    path = folder / "motion.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


class Media:
    """A media folder with motion.conf and strix.cfg in a temporary folder."""

    def __init__(self, folder, cameras=((1, 8081, "Front door"), (2, 8082, None)), **options):
        self.folder, self.base = folder, folder / "media"
        self.base.mkdir(exist_ok=True)
        self.motion_conf = write_motion_conf(folder, self.base, cameras)
        self.config = strix.Config(motion_config=str(self.motion_conf), **options)
        self.motion = strix.read_motion_config(str(self.motion_conf))
        assert self.motion.problems == []

    def cache(self, **options):
        options.setdefault("keep_days", self.config.keep_days)
        cache = strix.EventCache(str(self.base), self.motion.camera_ids, **options)
        cache.preload()
        return cache

    def app(self, cache=None):
        cache = cache or self.cache()
        return TestApp(strix.make_app(self.config, self.motion, cache)), cache

    def add_event(self, camera, date, name, frames=3, saved=False, video=b"", debug=True):
        """A processed event folder as strix leaves it."""
        event_dir = self.base / camera / date / name
        (event_dir / "debug").mkdir(parents=True)
        start = strix.event_key(name) >> 8
        for number in range(frames):
            second = start + number
            (event_dir / "{:02d}-{:02d}-{:02d}-00.jpg".format(
                second // 3600 % 24, second // 60 % 60, second % 60)).write_bytes(jpeg())
        (event_dir / "thumbnail.jpg").write_bytes(jpeg())
        if video:
            (event_dir / "video.m4v").write_bytes(video)
            if debug:
                (event_dir / "debug" / "video.m4v").write_bytes(video)
        if saved:
            (event_dir / ".saved").touch()
        return event_dir


def day(days_ago=0):
    """The date `days_ago` days before today, as motion names day folders."""
    return time.strftime("%Y-%m-%d", time.gmtime(strix.local_now() - days_ago * 86400))


def wait_for_deletes():
    for process in multiprocessing.active_children():
        process.join(10)


@pytest.fixture
def media(tmp_path):
    return Media(tmp_path)


# Configuration ###############################################################

def test_config_defaults_come_from_options(tmp_path):
    path = tmp_path / "strix.cfg"
    path.write_text("[strix]\n")
    config = strix.read_config(str(path))
    assert (config.motion_config, config.host, config.port, config.keep_days,
            config.check_minutes, config.log) == (
        "/etc/motion/motion.conf", "127.0.0.1", 8000, 45, 60, "-")
    assert config.jobs == max(1, os.cpu_count() // 2)
    assert config.video_codec == ["libx264", "-preset", "veryfast"]


def test_shipped_config_is_valid_and_documents_every_option():
    config = strix.read_config(os.path.join(HERE, "strix.cfg"))
    assert config.port == 8000
    text = open(os.path.join(HERE, "strix.cfg")).read()
    for name in [*strix.OPTIONS, *strix.AUTH_OPTIONS]:
        assert f"\n{name} =" in text or f"\n# {name} =" in text, name


def test_config_relative_paths_are_relative_to_the_file(tmp_path):
    path = tmp_path / "strix.cfg"
    path.write_text("[strix]\nmotion_config = motion/motion.conf\nlog = strix.log\n")
    config = strix.read_config(str(path))
    assert config.motion_config == str(tmp_path / "motion" / "motion.conf")
    assert config.log == str(tmp_path / "strix.log")


@pytest.mark.parametrize("text, expected", [
    ("[strix]\nport = 8000\ncolour = red\n", "line 3: unknown option 'colour'"),
    ("[strix]\n\nport = eighty\n", "line 3: port = 'eighty' is not valid: write a whole number"),
    ("[strix]\nkeep_days = -1\n", "line 2: keep_days = '-1' is not valid"),
    ("[strix]\njobs = 0\n", "line 2: jobs = '0' is not valid: write a whole number from 1 to 64"),
    ("[strix]\nvideo_codec = ;rm\n", "line 2: video_codec"),
    ("[strix]\n[other]\nx = 1\n", "line 2: unknown section [other]"),
    ("port = 8000\n", "line 1: an option before any section: start the file with a line [strix]"),
    ("[strix]\nport = 1\nport = 2\n", "line 3: port is set twice: keep one"),
    ("[strix]\n[strix]\n", "line 2: strix is set twice"),
    ("[strix]\nport = 1\nwhat\n", "line 3: cannot read 'what': write name = value"),
    ("# nothing\n", "no [strix] section"),
    ("[strix]\n[auth]\nuser = me\npassword_hash = hunter2\n",
     "line 4: password_hash = 'hunter2' is not valid: write the line `strix --hash-password`"
     " prints (a plain password is refused)"),
    ("[strix]\n[auth]\nuser = me\n", "line 2: [auth] needs both user and password_hash"),
    ("[strix]\n[auth]\npassword = x\n", "line 3: unknown option 'password' in [auth]"),
])
def test_config_errors_name_the_line_and_the_fix(tmp_path, text, expected):
    path = tmp_path / "strix.cfg"
    path.write_text(text)
    with pytest.raises(strix.ConfigError) as error:
        strix.read_config(str(path))
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_config_lists_every_problem_at_once(tmp_path):
    path = tmp_path / "strix.cfg"
    path.write_text("[strix]\nport = x\nkeep_days = y\n")
    with pytest.raises(strix.ConfigError) as error:
        strix.read_config(str(path))
    assert len(error.value.problems) == 2


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(strix.ConfigError) as error:
        strix.read_config(str(tmp_path / "nope.cfg"))
    assert "nope.cfg: cannot read" in str(error.value)


def run_strix(*args, cwd=HERE):
    return subprocess.run([sys.executable, os.path.join(HERE, "strix.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_command_line_exits_2_on_a_bad_config(tmp_path):
    path = tmp_path / "strix.cfg"
    path.write_text("[strix]\nport = 99999\n")
    result = run_strix("-c", str(path))
    assert result.returncode == 2
    assert f"{path} line 2: port = '99999' is not valid" in result.stderr
    result = run_strix("-c", str(tmp_path / "missing.cfg"))
    assert result.returncode == 2 and "cannot read the config file" in result.stderr


def test_command_line_check_and_version(media):
    path = media.folder / "strix.cfg"
    path.write_text(f"[strix]\nmotion_config = {media.motion_conf}\n")
    result = run_strix("--check", "-c", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all well" in result.stdout
    media.motion_conf.write_text(media.motion_conf.read_text().replace(
        "picture_filename", "picture_filename %v-%Y"))
    result = run_strix("--check", "-c", str(path))
    assert result.returncode == 1
    assert f"{media.motion_conf} line 2: write `picture_filename %Y-%m-%d/%v/%H-%M-%S-%q`" \
        in result.stdout
    assert run_strix("--version").stdout.strip() == f"strix {strix.__version__}"
    path.write_text("[strix]\nport = x\n")
    result = run_strix("--check", "-c", str(path))
    assert result.returncode == 1 and f"{path} line 2: port = 'x' is not valid" in result.stdout


# Motion configuration ########################################################

def test_motion_config_cameras_sorted_by_stream_port(tmp_path):
    base = tmp_path / "media"
    path = write_motion_conf(tmp_path, base, ((3, 8090, "Back"), (1, 8085, None), (2, 8088, "")))
    motion = strix.read_motion_config(str(path))
    assert motion.problems == []
    assert motion.base == str(base)
    assert motion.cameras == [strix.Camera("Camera1", "Camera1", 8085),
                              strix.Camera("Camera2", "Camera2", 8088),
                              strix.Camera("Camera3", "Back", 8090)]


def test_motion_config_parses_like_motion(tmp_path):
    """Comments only at the first character, '=' or blanks as separators, quotes stripped,
    and a camera starts from the main options as they stand at its line."""
    base = tmp_path / "media"
    (tmp_path / "cam1.conf").write_text(
        f"camera_id=1\n; a comment\ntarget_dir  =  \"{base}/Camera1\"\n"
        "stream_port\t8081\ncamera_name 'Front door'\n")
    (tmp_path / "cam2.conf").write_text(
        f"camera_id 2\ntarget_dir {base}/Camera2\nstream_port 8082\npicture_output off\n"
        "   # not a comment to motion: an unknown option named #\n")
    (tmp_path / "motion.conf").write_text(
        "# main\npicture_output on\n"
        f"picture_filename %Y-%m-%d/%v/%H-%M-%S-%q\ncamera cam1.conf\n"
        f"on_event_end /usr/bin/touch {base}/queue/Camera%t_%Y-%m-%d_%v\n"
        "camera cam2.conf\n")
    motion = strix.read_motion_config(str(tmp_path / "motion.conf"))
    assert [camera.name for camera in motion.cameras] == ["Front door", "Camera2"]
    problems = "\n".join(motion.problems)
    # cam1 was read before on_event_end was set; cam2 turned picture_output off.
    assert f"{tmp_path}/cam1.conf: strix learns of each event" in problems
    assert f"{tmp_path}/cam2.conf line 4: strix builds events from motion's pictures" \
        in problems
    assert len(motion.problems) == 2


def test_motion_config_legacy_names_and_camera_dir(tmp_path):
    base = tmp_path / "media"
    (tmp_path / "conf.d").mkdir()
    for number in (2, 1):
        (tmp_path / "conf.d" / f"c{number}.conf").write_text(
            f"camera_id {number}\ntarget_dir {base}/Camera{number}\nstream_port 80{number}0\n")
    (tmp_path / "conf.d" / "notes.txt").write_text("camera_id 9\n")
    (tmp_path / "thread.conf").write_text(
        f"camera_id 3\ntarget_dir {base}/Camera3\nstream_port 8030\n")
    (tmp_path / "motion.conf").write_text(
        "output_pictures on\noutput_debug_pictures on\nexif_text %D\n"
        "jpeg_filename %Y-%m-%d/%v/%H-%M-%S-%q\n"
        f"on_event_end touch {base}/queue/Camera%t_%Y-%m-%d_%v\n"
        "camera_dir conf.d\nthread thread.conf\n")
    motion = strix.read_motion_config(str(tmp_path / "motion.conf"))
    assert motion.problems == []
    assert [camera.id for camera in motion.cameras] == ["Camera1", "Camera2", "Camera3"]


def test_motion_config_relative_include_falls_back_to_working_folder(tmp_path, monkeypatch):
    base = tmp_path / "media"
    (tmp_path / "etc").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "cam.conf").write_text(
        f"camera_id 1\ntarget_dir {base}/Camera1\nstream_port 8081\n")
    (tmp_path / "etc" / "motion.conf").write_text(
        f"picture_output on\npicture_filename %Y-%m-%d/%v/%H-%M-%S-%q\n"
        f"on_event_end touch {base}/queue/Camera%t_%Y-%m-%d_%v\ncamera cam.conf\n")
    monkeypatch.chdir(tmp_path / "work")
    motion = strix.read_motion_config(str(tmp_path / "etc" / "motion.conf"))
    assert motion.problems == [] and [c.id for c in motion.cameras] == ["Camera1"]
    monkeypatch.chdir(tmp_path)
    motion = strix.read_motion_config(str(tmp_path / "etc" / "motion.conf"))
    assert motion.problems == [f"{tmp_path}/etc/motion.conf line 4: camera cam.conf: "
                               "no such file"]


def test_motion_config_without_camera_files_is_one_camera(tmp_path):
    base = tmp_path / "media"
    (tmp_path / "motion.conf").write_text(
        f"camera_id 4\ntarget_dir {base}/Camera4\nstream_port 8084\npicture_output on\n"
        f"picture_filename {strix.PICTURE_FILENAME}\n"
        f"on_event_end touch {base}/queue/Camera%t_%Y-%m-%d_%v\n")
    motion = strix.read_motion_config(str(tmp_path / "motion.conf"))
    assert motion.problems == [] and motion.cameras == [strix.Camera("Camera4", "Camera4", 8084)]


def test_motion_config_problems_name_file_line_and_fix(tmp_path):
    base = tmp_path / "media"
    (tmp_path / "c1.conf").write_text(f"camera_id 1\ntarget_dir {base}/Camera7\n")
    (tmp_path / "c2.conf").write_text(f"target_dir {base}/Camera2\nstream_port 8082\n")
    (tmp_path / "c3.conf").write_text(
        "camera_id 3\ntarget_dir /elsewhere/Camera3\nstream_port 8083\n"
        "picture_filename %v/%q\non_event_end touch /tmp/x\n")
    (tmp_path / "motion.conf").write_text(
        "picture_output on\ncamera c1.conf\ncamera c2.conf\ncamera c3.conf\n")
    motion = strix.read_motion_config(str(tmp_path / "motion.conf"))
    problems = motion.problems
    assert f"{tmp_path}/c1.conf line 2: target_dir must be BASE/Camera1 (camera_id 1)" \
        in problems[0]
    assert f"{tmp_path}/c1.conf: Camera1 needs a stream port for its live view: write " \
           "`stream_port 8081`" in problems
    assert any(p.startswith(f"{tmp_path}/c1.conf: write `picture_filename") for p in problems)
    assert any(p.startswith(f"{tmp_path}/c2.conf: each camera needs a camera_id")
               for p in problems)
    assert any(p.startswith(f"{tmp_path}/c3.conf line 4: write `picture_filename")
               for p in problems)
    assert any(p.startswith(f"{tmp_path}/c3.conf line 5: strix learns of each event from "
                            "motion's on_event_end: write `on_event_end touch /elsewhere/"
                            "queue/Camera%t_%Y-%m-%d_%v`") for p in problems)


def test_motion_config_duplicate_camera_ids_and_two_media_folders(tmp_path):
    path = write_motion_conf(tmp_path, tmp_path / "media", ((1, 8081, None), (2, 8082, None)))
    (tmp_path / "camera2.conf").write_text(
        f"camera_id 1\ntarget_dir {tmp_path}/media/Camera1\nstream_port 8082\n")
    motion = strix.read_motion_config(str(path))
    assert any("camera_id 1 is used by 2 cameras" in p for p in motion.problems)
    (tmp_path / "camera1.conf").write_text(
        f"camera_id 1\ntarget_dir {tmp_path}/other/Camera1\nstream_port 8081\n")
    (tmp_path / "camera2.conf").write_text(
        f"camera_id 2\ntarget_dir {tmp_path}/media/Camera2\nstream_port 8082\n")
    motion = strix.read_motion_config(str(path))
    assert motion.base is None
    assert any("must be in one media folder" in p for p in motion.problems)


# The event cache #############################################################

def test_event_records_come_from_the_folder(media, tiny_video):
    media.add_event("Camera1", day(1), "10-00-00", frames=5, video=tiny_video, saved=True)
    media.add_event("Camera1", day(1), "10-00-00.2", frames=1)
    cache = media.cache()
    events = cache.query("Camera1", 0, strix.local_now(), 0, 0)
    assert [(e.name, e.length, e.flags) for e in events] == [
        ("10-00-00", 4, strix.HAS_VIDEO | strix.HAS_DEBUG | strix.HAS_THUMBNAIL | strix.SAVED),
        ("10-00-00.2", 0, strix.HAS_DEBUG | strix.HAS_THUMBNAIL)]
    assert events[0].start == strix.midnight(day(1)) + 36000


def test_event_crossing_midnight_ends_the_next_day(media):
    event_dir = media.add_event("Camera1", day(2), "23-59-58", frames=1)
    (event_dir / "00-00-03-01.jpg").write_bytes(jpeg())
    event = media.cache().get("Camera1", day(2), "23-59-58")
    assert event.length == 5
    assert event.json()["end"] == day(1) + " 00:00:03"


def brute_force(events, start, end, offset, limit):
    found = sorted(e for e in events if start <= e[0] <= end)[::-1][offset:]
    return sorted(found[:limit] if limit else found)


def test_queries_match_a_brute_force_answer(media):
    rng = random.Random(4)
    events = {"Camera1": [], "Camera2": []}
    for _ in range(400):
        camera = rng.choice(["Camera1", "Camera2"])
        date, second = day(rng.randrange(1, 8)), rng.choice([rng.randrange(86400), 86399])
        key = second << 8 | rng.choice([0, 0, 0, 2, 3])
        name = strix.event_name(key)
        if not (media.base / camera / date / name).exists():
            media.add_event(camera, date, name, frames=rng.choice([1, 3]),
                            saved=rng.random() < 0.2)
            events[camera].append((strix.midnight(date) + second, key, date, name))
    for cache in (media.cache(), media.cache()):  # the second one loads from index files
        for _ in range(300):
            camera = rng.choice(["Camera1", "Camera2"])
            start = strix.midnight(day(rng.randrange(0, 9))) + rng.randrange(86400)
            end = start + rng.randrange(0, 4 * 86400)
            offset, limit = rng.randrange(0, 60), rng.choice([0, 1, 5, 10, 50])
            got = [(e.start, e.date, e.name) for e in cache.query(camera, start, end,
                                                                  offset, limit)]
            want = [(s, d, n) for s, _, d, n in brute_force(events[camera], start, end,
                                                             offset, limit)]
            assert got == want, (camera, start, end, offset, limit)
            assert json.loads("[" + ", ".join(cache.query_json(camera, start, end, offset,
                                                               limit)) + "]") == \
                [e.json() for e in cache.query(camera, start, end, offset, limit)]


def test_neighbours_cross_day_boundaries(media):
    for date, name in ((day(3), "10-00-00"), (day(2), "09-00-00"), (day(2), "09-00-00.2"),
                       (day(1), "08-00-00")):
        media.add_event("Camera1", date, name, frames=1)
    cache = media.cache()
    middle = cache.get("Camera1", day(2), "09-00-00.2")
    older, newer = cache.neighbours(middle)
    assert (older.date, older.name) == (day(2), "09-00-00")
    assert (newer.date, newer.name) == (day(1), "08-00-00")
    assert cache.neighbours(newer)[1] is None
    assert cache.neighbours(cache.get("Camera1", day(3), "10-00-00"))[0] is None


def test_warm_start_reads_index_files_and_sees_changes_by_hand(media):
    media.add_event("Camera1", day(3), "10-00-00")
    media.add_event("Camera1", day(3), "11-00-00")
    media.cache()
    index = media.base / ".strix" / "Camera1" / f"{day(3)}.json"
    assert json.loads(index.read_text())["keys"][0] == strix.event_key("10-00-00")
    # an index written within two seconds of the folder's change is not trusted yet
    old = time.time() - 3600
    os.utime(media.base / "Camera1" / day(3), (old, old))
    media.cache()
    with structlog.testing.capture_logs() as logs:
        assert media.cache().count() == 2
    assert "days_rescanned" in str(logs) and "'days_rescanned': 0" in str(logs)
    shutil.rmtree(media.base / "Camera1" / day(3) / "10-00-00")  # deleted by hand
    cache = media.cache()
    assert [e.name for e in cache.query("Camera1", 0, strix.local_now(), 0, 0)] == ["11-00-00"]


def test_corrupt_or_hostile_index_files_are_rebuilt(media):
    media.add_event("Camera1", day(3), "10-00-00")
    media.cache()
    index = media.base / ".strix" / "Camera1" / f"{day(3)}.json"
    mtime = os.stat(media.base / "Camera1" / day(3)).st_mtime_ns
    hostile = {"mtime": mtime, "written": mtime + 10**10, "keys": [1], "lengths": [1],
               "flags": [1], "pending": ["../../etc"]}
    contents = [b"{not json", b"[]"] + [json.dumps(dict(hostile, **change)).encode() for change in (
        {"keys": ["../../etc"]}, {"keys": [2, 1], "lengths": [1, 1], "flags": [1, 1]},
        {"keys": [-5]}, {"keys": [86400 << 8]}, {"lengths": [-1]}, {"flags": [256]},
        {"keys": [1.5]}, {"lengths": [2**70]}, {"flags": []}, {"pending": [5]},
        {"written": "x"}, {"pending": None})]
    for content in contents:
        index.write_bytes(content)
        with structlog.testing.capture_logs() as logs:
            cache = media.cache()
        assert [e.name for e in cache.query("Camera1", 0, strix.local_now(), 0, 0)] == \
            ["10-00-00"]
        assert any(entry["event"] == "index file unreadable, folder rescanned"
                   for entry in logs), content


def test_refresh_sees_a_day_folder_changed_while_running(media):
    media.add_event("Camera1", day(1), "10-00-00")
    cache = media.cache()
    assert cache.refresh() == 0
    media.add_event("Camera1", day(1), "12-00-00")
    shutil.rmtree(media.base / "Camera1" / day(1) / "10-00-00")
    media.add_event("Camera2", day(2), "08-00-00")
    assert cache.refresh() == 2
    assert [e.name for e in cache.query("Camera1", 0, strix.local_now(), 0, 0)] == ["12-00-00"]
    assert cache.count("Camera2") == 1


def test_set_adds_and_updates_an_event(media):
    cache = media.cache()
    event_dir = media.add_event("Camera2", day(0), "00-00-01")
    cache.set("Camera2", day(0), "00-00-01")
    assert not cache.get("Camera2", day(0), "00-00-01").saved
    (event_dir / ".saved").touch()
    cache.set("Camera2", day(0), "00-00-01")
    assert cache.get("Camera2", day(0), "00-00-01").saved
    assert media.cache().get("Camera2", day(0), "00-00-01").saved  # and on disk


def test_expiry_removes_old_events_keeps_saved_ones(media):
    media.add_event("Camera1", day(10), "10-00-00")
    media.add_event("Camera1", day(10), "11-00-00", saved=True)
    media.add_event("Camera2", day(10), "10-00-00")
    media.add_event("Camera1", day(1), "10-00-00")
    with structlog.testing.capture_logs() as logs:
        cache = media.cache(keep_days=5)
    wait_for_deletes()
    assert [(e.date, e.name) for e in cache.query("Camera1", 0, strix.local_now(), 0, 0)] == \
        [(day(10), "11-00-00"), (day(1), "10-00-00")]
    assert cache.count("Camera2") == 0
    assert not (media.base / "Camera1" / day(10) / "10-00-00").exists()
    assert (media.base / "Camera1" / day(10) / "11-00-00" / "thumbnail.jpg").exists()
    assert not (media.base / "Camera2" / day(10)).exists()  # the empty day is gone too
    assert not (media.base / ".strix" / "Camera2" / f"{day(10)}.json").exists()
    assert os.listdir(media.base / "delete_queue") == []
    assert {"event": "expired", "events": 2, "folders": 2} .items() <= \
        [entry for entry in logs if entry["event"] == "expired"][0].items()
    assert media.cache(keep_days=5).count() == 2  # the index files agree


def test_expiry_keeps_an_event_kept_by_hand(media):
    media.add_event("Camera1", day(10), "10-00-00")
    cache = media.cache(keep_days=0)
    (media.base / "Camera1" / day(10) / "10-00-00" / ".saved").touch()
    cache.keep_days = 5
    cache.expire()
    assert cache.get("Camera1", day(10), "10-00-00").saved
    assert (media.base / "Camera1" / day(10) / "10-00-00" / "thumbnail.jpg").exists()


def test_expiry_within_the_cutoff_day_goes_by_time(media):
    cutoff = strix.local_now() - 5 * 86400
    before, after = [(time.strftime("%Y-%m-%d", time.gmtime(moment)),
                      strix.event_name(moment % 86400 << 8)) for moment in (cutoff - 120,
                                                                            cutoff + 120)]
    media.add_event("Camera1", *before, frames=1)
    media.add_event("Camera1", *after, frames=1)
    cache = media.cache(keep_days=5)
    assert [(e.date, e.name) for e in cache.query("Camera1", 0, strix.local_now(), 0, 0)] \
        == [after]


def test_expiry_runs_at_most_every_check_minutes(media):
    cache = media.cache(keep_days=5)
    media.add_event("Camera1", day(10), "10-00-00")
    media.add_event("Camera1", day(0), "00-00-00")
    cache.set("Camera1", day(10), "10-00-00")
    cache.set("Camera1", day(0), "00-00-00")
    assert cache.count() == 2  # expiry ran at preload, not again within the hour
    cache.next_expiry = 0
    cache.set("Camera1", day(0), "00-00-00")
    assert cache.count() == 1


def test_expiry_never_follows_a_symlink_out_of_base(media, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "10-00-00-00.jpg").write_bytes(jpeg())
    (outside / "keep.txt").write_text("mine")
    old_day = media.base / "Camera1" / day(10)
    old_day.mkdir(parents=True)
    os.symlink(outside, old_day / "10-00-00")  # an event folder that is a symlink
    event_dir = media.add_event("Camera1", day(10), "11-00-00")
    os.symlink(outside / "keep.txt", event_dir / "link.jpg")  # a link inside an event
    os.symlink(outside, media.base / "Camera1" / day(11))  # a day folder that is a symlink
    cache = media.cache(keep_days=5)
    wait_for_deletes()
    assert cache.count() == 0
    assert sorted(os.listdir(outside)) == ["10-00-00-00.jpg", "keep.txt"]
    assert (outside / "keep.txt").read_text() == "mine"
    assert os.path.islink(old_day / "10-00-00")


def test_camera_folder_symlinked_out_of_base_is_refused(media, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / day(10) / "10-00-00").mkdir(parents=True)
    os.symlink(outside, media.base / "Camera1")
    with structlog.testing.capture_logs() as logs:
        cache = media.cache(keep_days=5)
    assert cache.count() == 0
    assert (outside / day(10) / "10-00-00").is_dir()
    assert any(entry["event"].startswith("camera folder refused") for entry in logs)


def test_preload_empties_what_a_crash_left_in_the_delete_queue(media):
    leftover = media.base / "delete_queue" / "tmp123" / "Camera1" / day(50) / "10-00-00"
    leftover.mkdir(parents=True)
    (leftover / "10-00-00-00.jpg").write_bytes(jpeg())
    media.cache()
    wait_for_deletes()
    assert os.listdir(media.base / "delete_queue") == []


def test_delete_goes_through_the_delete_queue(media):
    media.add_event("Camera1", day(1), "10-00-00", saved=True)
    cache = media.cache()
    assert cache.delete("Camera1", day(1), "10-00-00")
    assert cache.get("Camera1", day(1), "10-00-00") is None
    assert not (media.base / "Camera1" / day(1) / "10-00-00").exists()
    wait_for_deletes()
    assert os.listdir(media.base / "delete_queue") == []
    assert not cache.delete("Camera1", day(1), "10-00-00")
    assert media.cache().count() == 0


# Processing ##################################################################

def probe(path):
    """(codec, width, height, seconds) of a video, as ffprobe reads it."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,pix_fmt:format=duration", "-of",
                          "json", str(path)], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    stream = info["streams"][0]
    return (stream["codec_name"], stream["width"], stream["height"], stream["pix_fmt"],
            float(info["format"]["duration"]))


def write_motion_event(folder, start, seconds, fps, size=(64, 48), exif=True, busiest=None,
                       debug=True):
    """Frames as motion writes them: `fps` a second for `seconds` from second-of-day `start`;
    frame number `busiest` is red and has the most changed pixels in its EXIF."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(seconds * fps):
        second = (start + number // fps) % 86400
        name = "{:02d}-{:02d}-{:02d}-{:02d}".format(second // 3600, second // 60 % 60,
                                                    second % 60, number % fps)
        red = number == busiest
        description = f"{5000 if red else 100 + number}-3-40-40-30-20" if exif else None
        (folder / f"{name}.jpg").write_bytes(jpeg(*size, (220, 30, 30) if red else (30, 30, 200),
                                                  description))
        if debug:
            (folder / f"{name}m.jpg").write_bytes(jpeg(*size, (255, 255, 255)))
        names.append(name)
    return names


def process_queue(media, cache, **options):
    """Run one pass of the queue watcher and wait for the events it started."""
    config = strix.Config(motion_config=str(media.motion_conf), **options)
    processor = strix.Processor(config, media.motion, cache)
    for future in processor.poll():
        future.result()
    return processor


def queue(media, entry):
    (media.base / "queue").mkdir(exist_ok=True)
    (media.base / "queue" / entry).touch()


def test_processing_makes_videos_thumbnail_and_lists_the_event(media):
    cache = media.cache()
    write_motion_event(media.base / "Camera1" / day(1) / "07", 36000, 4, 5, size=(1600, 900),
                       busiest=13)
    queue(media, f"Camera1_{day(1)}_07")
    with structlog.testing.capture_logs() as logs:
        process_queue(media, cache)
    assert [(entry["camera"], entry["folder"], entry["frames"]) for entry in logs
            if entry["event"] == "event processed"] == [("Camera1", f"{day(1)}/10-00-00", 20)]
    event_dir = media.base / "Camera1" / day(1) / "10-00-00"
    assert not (media.base / "Camera1" / day(1) / "07").exists()
    assert os.listdir(media.base / "queue") == []
    codec, width, height, pix_fmt, seconds = probe(event_dir / "video.m4v")
    assert (codec, width, height, pix_fmt) == ("h264", 1280, 720, "yuv420p")
    assert abs(seconds - 4) < 0.5
    assert probe(event_dir / "debug" / "video.m4v")[0] == "h264"
    assert len(list((event_dir / "debug").glob("*m.jpg"))) == 20
    assert len(list(event_dir.glob("??-??-??-??.jpg"))) == 20
    with Image.open(event_dir / "thumbnail.jpg") as thumbnail:
        assert thumbnail.size == (640, 360)
        red, green, blue = thumbnail.getpixel((320, 180))
        assert red > 150 and blue < 100  # the busiest frame, from motion's EXIF
    app, _ = media.app(cache)
    event = app.get("/api/events/Camera1").json["events"]["Camera1"][0]
    assert event["start"] == f"{day(1)} 10:00:00" and event["end"] == f"{day(1)} 10:00:03"
    assert app.get(event["video"]).content_type == "video/mp4"


def test_thumbnail_without_exif_is_a_quarter_of_the_way_in(media):
    cache = media.cache()
    write_motion_event(media.base / "Camera1" / day(1) / "01", 3600, 4, 2, exif=False,
                       busiest=2, debug=False)
    queue(media, f"Camera1_{day(1)}_01")
    process_queue(media, cache)
    with Image.open(media.base / "Camera1" / day(1) / "01-00-00" / "thumbnail.jpg") as image:
        assert image.getpixel((32, 24))[0] > 150  # frame 2 of 8
    assert not (media.base / "Camera1" / day(1) / "01-00-00" / "debug").exists()


def test_two_events_in_one_second_get_names_that_sort_and_parse(media):
    cache = media.cache()
    for number in ("01", "02", "03"):
        write_motion_event(media.base / "Camera2" / day(1) / number, 7200, 1, 2)
        queue(media, f"Camera2_{day(1)}_{number}")
    process_queue(media, cache)
    names = [e.name for e in cache.query("Camera2", 0, strix.local_now(), 0, 0)]
    assert names == ["02-00-00", "02-00-00.2", "02-00-00.3"]
    app, _ = media.app(cache)
    assert app.get(f"/motion/Camera2/{day(1)}/02-00-00.3/video.m4v").status_int == 200


def test_long_events_become_a_timelapse(media):
    cache = media.cache()
    write_motion_event(media.base / "Camera1" / day(1) / "09", 3600, 480, 1, debug=False)
    queue(media, f"Camera1_{day(1)}_09")
    process_queue(media, cache)
    seconds = probe(media.base / "Camera1" / day(1) / "01-00-00" / "video.m4v")[-1]
    assert abs(seconds - 480 / 16) < 2


def test_an_event_crossing_midnight_keeps_every_frame(media):
    cache = media.cache()
    write_motion_event(media.base / "Camera1" / day(2) / "04", 86398, 2, 4)
    write_motion_event(media.base / "Camera1" / day(1) / "04", 0, 3, 4)
    queue(media, f"Camera1_{day(1)}_04")  # motion names the day the event ended
    process_queue(media, cache)
    event_dir = media.base / "Camera1" / day(2) / "23-59-58"
    assert len(list(event_dir.glob("??-??-??-??.jpg"))) == 20
    assert not (media.base / "Camera1" / day(1) / "04").exists()
    assert abs(probe(event_dir / "video.m4v")[-1] - 5) < 0.5
    event = cache.get("Camera1", day(2), "23-59-58")
    assert event.length == 4 and event.json()["end"] == f"{day(1)} 00:00:02"


@pytest.mark.parametrize("codec, path, reason", [
    (["no_such_encoder"], None, "ffmpeg failed"),
    (["libx264"], "", "ffmpeg is not installed"),
])
def test_failed_video_keeps_the_footage_and_lists_the_event(media, monkeypatch, codec, path,
                                                            reason):
    cache = media.cache()
    write_motion_event(media.base / "Camera1" / day(1) / "02", 39600, 2, 3)
    if path is not None:
        monkeypatch.setenv("PATH", path)
    queue(media, f"Camera1_{day(1)}_02")
    with structlog.testing.capture_logs() as logs:
        processor = process_queue(media, cache, video_codec=codec)
    event = cache.get("Camera1", day(1), "11-00-00")
    assert event.flags == strix.HAS_DEBUG | strix.HAS_THUMBNAIL
    assert len(list((media.base / "Camera1" / day(1) / "11-00-00").glob("*.jpg"))) == 7
    assert reason in processor.failed[0]["reason"]
    warning = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warning) == 1 and reason in str(warning[0]["problems"])


def test_corrupt_and_empty_frames_do_not_stop_processing(media):
    cache = media.cache()
    names = write_motion_event(media.base / "Camera1" / day(1) / "05", 43200, 2, 4)
    folder = media.base / "Camera1" / day(1) / "05"
    (folder / f"{names[0]}.jpg").write_bytes(b"")
    (folder / f"{names[1]}.jpg").write_bytes(jpeg()[:100])
    queue(media, f"Camera1_{day(1)}_05")
    process_queue(media, cache)
    event = cache.get("Camera1", day(1), "12-00-00")
    assert event.flags & strix.HAS_THUMBNAIL
    assert len(list((media.base / "Camera1" / day(1) / "12-00-00").glob("*.jpg"))) == 9


def test_folders_without_frames_are_logged_and_left_alone(media):
    cache = media.cache()
    (media.base / "Camera1" / day(1) / "06").mkdir(parents=True)
    (media.base / "Camera1" / day(1) / "06" / "notes.txt").write_text("not a frame")
    write_motion_event(media.base / "Camera1" / day(1) / "08", 50000, 1, 2)
    for name in (media.base / "Camera1" / day(1) / "08").glob("??-??-??-??.jpg"):
        name.unlink()  # debug frames only
    queue(media, f"Camera1_{day(1)}_06")
    queue(media, f"Camera1_{day(1)}_08")
    with structlog.testing.capture_logs() as logs:
        process_queue(media, cache)
    assert (media.base / "Camera1" / day(1) / "06" / "notes.txt").exists()
    assert any(entry["event"].startswith("event processing failed") for entry in logs)
    event = cache.get("Camera1", day(1), "13-53-20")
    assert event.flags & strix.HAS_DEBUG and event.flags & strix.HAS_THUMBNAIL


def test_queue_entries_that_point_nowhere_are_refused(media, tmp_path):
    cache = media.cache()
    outside = tmp_path / "outside"
    write_motion_event(outside / "01", 3600, 1, 2)
    (media.base / "Camera1").mkdir()
    os.symlink(outside, media.base / "Camera1" / day(1))  # a day folder leading out of BASE
    (media.base / "Camera2" / day(1)).mkdir(parents=True)
    (media.base / "Camera2" / day(1) / "03").write_text("a file, not a folder")
    os.symlink(outside / "01", media.base / "Camera2" / day(1) / "04")
    entries = ["garbage", "Camera9_2026-01-01_01", "Camera1_2026-02-30_01",
               f"Camera2_{day(1)}_05", f"Camera2_{day(1)}_03", f"Camera2_{day(1)}_04",
               f"Camera1_{day(1)}_01", f"Camera1_{day(1)}_01_x", "Camera1_..%2f_01"]
    for entry in entries:
        queue(media, entry)
    (media.base / "queue" / "a-folder").mkdir()
    before = sorted(os.listdir(outside / "01"))
    with structlog.testing.capture_logs() as logs:
        process_queue(media, cache)
    assert os.listdir(media.base / "queue") == []
    refused = [entry["entry"] for entry in logs if entry["event"] == "queue entry refused"]
    assert sorted(refused) == sorted(entries + ["a-folder"])
    assert sorted(os.listdir(outside / "01")) == before
    assert cache.count() == 0


def test_unprocessed_folders_are_processed_again_unless_motion_may_be_writing(media):
    write_motion_event(media.base / "Camera1" / day(1) / "11", 30000, 1, 2)
    write_motion_event(media.base / "Camera1" / day(0) / "12", 10, 1, 2)
    an_hour_ago = time.time() - 3600
    folder = media.base / "Camera1" / day(1) / "11"
    for path in [folder / name for name in os.listdir(folder)] + [folder]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    cache = media.cache()
    assert sorted(cache.pending()) == [("Camera1", day(1), "11"), ("Camera1", day(0), "12")]
    config = strix.Config(motion_config=str(media.motion_conf))
    processor = strix.Processor(config, media.motion, cache)
    processor.requeue()
    processor.pool.shutdown(wait=True)
    assert cache.get("Camera1", day(1), strix.event_name(30000 << 8)) is not None
    assert (media.base / "Camera1" / day(0) / "12").is_dir()
    assert cache.pending() == [("Camera1", day(0), "12")]


def test_an_event_of_20000_frames_and_names_that_are_not_utf8(media):
    cache = media.cache()
    folder = media.base / "Camera1" / day(1) / "03"
    folder.mkdir(parents=True)
    frame = jpeg()
    for number in range(20000):  # 10 a second for 2,000 s
        second = 3600 + number // 10
        (folder / "{:02d}-{:02d}-{:02d}-{:02d}.jpg".format(
            second // 3600, second // 60 % 60, second % 60, number % 10)).write_bytes(frame)
    odd_name = os.fsdecode(b"\xff\xfe-not-utf8.jpg")
    (folder / odd_name).write_bytes(b"kept as is")
    os.mkdir(media.base / "Camera1" / day(1) / os.fsdecode(b"\xff\xfe"))
    queue(media, f"Camera1_{day(1)}_03")
    queue(media, os.fsdecode(b"Camera1_\xff_03"))
    with structlog.testing.capture_logs() as logs:
        process_queue(media, cache)
    event_dir = media.base / "Camera1" / day(1) / "01-00-00"
    assert len(list(event_dir.glob("??-??-??-??.jpg"))) == 20000
    assert (event_dir / odd_name).read_bytes() == b"kept as is"
    assert abs(probe(event_dir / "video.m4v")[-1] - 2000 / 16) < 2
    assert [entry["event"] for entry in logs].count("queue entry refused") == 1
    assert os.listdir(media.base / "queue") == []
    assert cache.refresh() == 0  # the odd day-folder name is passed over


# The JSON API ################################################################

def test_cameras_list(media):
    app, _ = media.app()
    assert app.get("/api/cameras/list").json == {"cameras": [["Camera1", 8081],
                                                             ["Camera2", 8082]]}


def test_events_api_shape(media, tiny_video):
    media.add_event("Camera1", "2026-01-03", "03-12-34", frames=4, video=tiny_video)
    app, _ = media.app(media.cache(keep_days=0))
    reply = app.get("/api/events/Camera1", {"start": "2026-01-01 00:00:00",
                                            "end": "2026-01-31 23:59:59"})
    assert reply.content_type == "application/json"
    assert reply.json == {
        "start": "2026-01-01 00:00:00", "end": "2026-01-31 23:59:59", "offset": 0, "limit": 10,
        "events": {"Camera1": [{
            "start": "2026-01-03 03:12:34", "end": "2026-01-03 03:12:37",
            "title": "Sat Jan 03 03:12:34 AM",
            "video": "/motion/Camera1/2026-01-03/03-12-34/video.m4v",
            "debug_video": "/motion/Camera1/2026-01-03/03-12-34/debug/video.m4v",
            "thumbnail": "/motion/Camera1/2026-01-03/03-12-34/thumbnail.jpg",
            "images": "/motion/Camera1/2026-01-03/03-12-34/", "saved": False}]}}
    for url in ("video", "debug_video", "thumbnail", "images"):
        assert app.get(reply.json["events"]["Camera1"][0][url]).status_int == 200


def test_events_api_defaults_offset_limit_and_order(media):
    names = [f"{hour:02d}-00-00" for hour in range(12)]
    for name in names:
        media.add_event("Camera1", day(1), name, frames=1)
    app, _ = media.app()
    reply = app.get("/api/events/Camera1").json
    assert reply["start"] == "1970-01-01 00:00:00" and reply["limit"] == 10
    assert abs(strix.parse_time(reply["end"]) - strix.local_now()) < 5
    starts = [event["start"][-8:] for event in reply["events"]["Camera1"]]
    assert starts == [f"{hour:02d}:00:00" for hour in range(2, 12)]  # newest 10, oldest first
    reply = app.get("/api/events/Camera1?offset=3&limit=2").json
    assert [e["start"][-8:] for e in reply["events"]["Camera1"]] == ["07:00:00", "08:00:00"]
    assert len(app.get("/api/events/Camera1?limit=0").json["events"]["Camera1"]) == 12
    assert app.get("/api/events/Camera1?offset=50").json["events"] == {"Camera1": []}


def test_events_api_several_cameras_match_ids_exactly(tmp_path):
    media = Media(tmp_path, cameras=((1, 8081, None), (10, 8090, None)))
    media.add_event("Camera1", day(1), "10-00-00", frames=1)
    media.add_event("Camera10", day(1), "11-00-00", frames=1)
    app, _ = media.app()
    reply = app.get("/api/events/Camera1").json["events"]
    assert list(reply) == ["Camera1"] and len(reply["Camera1"]) == 1
    reply = app.get("/api/events/Camera10,Camera1").json["events"]
    assert [len(reply["Camera10"]), len(reply["Camera1"])] == [1, 1]
    assert reply["Camera10"][0]["start"].endswith("11:00:00")


@pytest.mark.parametrize("url, status", [
    ("/api/events/Camera3", 404),
    ("/api/events/Camera1,Camera3", 404),
    ("/api/events/camera1", 404),
    ("/api/events/Camera1?start=yesterday", 400),
    ("/api/events/Camera1?end=2026-13-01%2000:00:00", 400),
    ("/api/events/Camera1?start=2026-01-01", 400),
    ("/api/events/Camera1?offset=-1", 400),
    ("/api/events/Camera1?limit=ten", 400),
    ("/api/events/Camera1?limit=99999999999999999999", 400),
    ("/api/events/Camera1?start=%FF%FE", 400),
    ("/api/events/%3Cscript%3E", 404),
    ("/api/nothing", 404),
])
def test_events_api_errors_are_json(media, url, status):
    app, _ = media.app()
    reply = app.get(url, status=status)
    assert reply.content_type == "application/json"
    assert isinstance(reply.json["error"], str) and reply.json["error"]


def test_events_api_repeated_keys_take_the_last(media):
    app, _ = media.app()
    assert app.get("/api/events/Camera1?limit=1&limit=3").json["limit"] == 3


# Media #######################################################################

def test_media_serves_frames_videos_with_ranges(media, tiny_video):
    media.add_event("Camera1", day(1), "10-00-00", video=tiny_video)
    app, _ = media.app()
    url = f"/motion/Camera1/{day(1)}/10-00-00"
    video = app.get(f"{url}/video.m4v")
    assert video.content_type == "video/mp4" and video.body == tiny_video
    part = app.get(f"{url}/video.m4v", headers={"Range": "bytes=0-99"}, status=206)
    assert part.body == tiny_video[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(tiny_video)}"
    assert app.get(f"{url}/thumbnail.jpg").content_type == "image/jpeg"
    assert app.get(f"{url}/debug/video.m4v").content_type == "video/mp4"
    download = app.get(f"{url}/video.m4v?download=1")
    assert "attachment" in download.headers["Content-Disposition"]
    page = app.get(f"{url}/")
    assert page.content_type == "text/html"
    assert page.html.find_all("a", href=f"{url}/10-00-00-00.jpg")


def test_media_refuses_everything_but_media(media, tmp_path):
    media.add_event("Camera1", day(1), "10-00-00")
    (media.base / "Camera1" / "secret.conf").write_text("password")
    (tmp_path / "outside.jpg").write_bytes(jpeg())
    os.symlink(tmp_path / "outside.jpg", media.base / "Camera1" / day(1) / "10-00-00" / "x.jpg")
    app, _ = media.app()
    for url in ("/motion/Camera1/secret.conf", f"/motion/.strix/Camera1/{day(1)}.json",
                "/motion/queue/", "/motion/Camera1/../../outside.jpg",
                "/motion/Camera1/%2e%2e/%2e%2e/outside.jpg", "/motion/Camera1/..%2f..%2f",
                f"/motion/Camera1/{day(1)}/10-00-00/x.jpg", "/motion/Camera1//etc/passwd",
                "/motion/Camera1/a%00b.jpg", "/motion/Camera9/x.jpg", "/motion/Camera1/",
                f"/motion/Camera1/{day(1)}/10-00-00/nothing.jpg", "/motion/" + "a/" * 1000,
                "/motion/Camera1/%FF%FE.jpg"):
        assert app.get(url, expect_errors=True).status_int == 404, url


# Demo ########################################################################

def test_demo_makes_a_valid_setup_with_real_frames(tmp_path):
    path = strix.make_demo(str(tmp_path / "demo"))
    config = strix.read_config(path)
    motion = strix.read_motion_config(config.motion_config)
    assert strix.check(config, motion) == []
    assert 2 <= len(motion.cameras) <= 3
    entries = os.listdir(os.path.join(motion.base, "queue"))
    assert len(entries) >= 2 * len(motion.cameras)
    camera, date, number = strix.QUEUE_RE.match(entries[0]).groups()
    frames = strix.frame_names(os.path.join(motion.base, camera, date, number))
    with Image.open(os.path.join(motion.base, camera, date, number, frames[0])) as image:
        assert image.format == "JPEG" and image.getexif()[270].count("-") == 5
    assert strix.make_demo(str(tmp_path / "demo")) == path  # made once


# Crash safety ################################################################

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def strix_command(folder, motion_conf, **options):
    """(command, port) of a real strix process over `motion_conf`, its strix.cfg written
    in `folder`: a free port, and min_free_percent 0 so a full test disk deletes nothing."""
    port = free_port()
    config = folder / "strix.cfg"
    config.write_text(f"[strix]\nmotion_config = {motion_conf}\nport = {port}\n"
                      "min_free_percent = 0\n"
                      + "".join(f"{name} = {value}\n" for name, value in options.items()))
    return [sys.executable, os.path.join(HERE, "strix.py"), "-c", str(config)], port


def api_events(port, cameras="Camera1,Camera2"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/events/{cameras}?limit=0",
                                timeout=5) as reply:
        return {(camera, event["start"]): event
                for camera, events in json.load(reply)["events"].items() for event in events}


def test_kill_9_at_any_moment_loses_nothing_but_expired_events(tmp_path):
    """strix is killed at random moments while it preloads, expires and processes, then
    restarted: every event not due to expire is there with all its frames, and only
    those due to expire are gone."""
    seed = int(os.environ.get("STRIX_CRASH_SEED", time.time()))
    print("STRIX_CRASH_SEED", seed)  # pytest shows it when the test fails
    rng = random.Random(seed)
    media = Media(tmp_path)
    frames, expired = {}, set()
    for number in range(30):  # processed events, a third of them due to expire
        camera, days_ago = rng.choice(["Camera1", "Camera2"]), rng.choice([1, 2, 10])
        name = strix.event_name(rng.randrange(0, 80000) << 8)
        if (media.base / camera / day(days_ago) / name).exists():
            continue
        saved = days_ago == 10 and number % 4 == 0
        media.add_event(camera, day(days_ago), name, frames=3, saved=saved)
        start = f"{day(days_ago)} {name[:8].replace('-', ':')}"
        if days_ago == 10 and not saved:
            expired.add((camera, start))
        else:
            frames[(camera, start)] = 3
    for number in range(1, 11):  # motion's unprocessed events, with their queue entries
        camera = f"Camera{number % 2 + 1}"
        second = 3600 * number
        write_motion_event(media.base / camera / day(1) / f"{number:02d}", second, 2, 3)
        queue(media, f"{camera}_{day(1)}_{number:02d}")
        frames[(camera, f"{day(1)} {second // 3600:02d}:00:00")] = 6
    command, port = strix_command(tmp_path, media.motion_conf, keep_days=5, jobs=2,
                                  log=tmp_path / "strix.log")
    for _ in range(8):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.15, 1.5))
        process.kill()
        process.wait()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, listed = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            try:
                listed = api_events(port)
            except OSError:
                pass
            if set(listed) >= set(frames) and not os.listdir(media.base / "queue"):
                break
            time.sleep(0.2)
    finally:
        process.kill()
        process.wait()
    assert set(listed) == set(frames), (set(frames) - set(listed), set(listed) - set(frames))
    for (camera, start), count in frames.items():
        event_dir = media.base / camera / start[:10] / start[11:].replace(":", "-")
        assert len(list(event_dir.glob("??-??-??-??.jpg"))) == count, event_dir
        assert (event_dir / "thumbnail.jpg").exists(), event_dir
        if count == 6:  # processed by strix
            assert probe(event_dir / "video.m4v")[0] == "h264"
            assert len(list((event_dir / "debug").glob("*m.jpg"))) == 6
    for camera, start in expired:
        assert not (media.base / camera / start[:10] / start[11:].replace(":", "-")).exists()
    assert [name for name in os.listdir(media.base / "Camera1" / day(1))
            + os.listdir(media.base / "Camera2" / day(1)) if strix.NUMBER_RE.match(name)] == []
    for index in (media.base / ".strix").glob("*/*.json"):
        json.loads(index.read_text())  # never half-written
    deadline = time.monotonic() + 10  # the last start's background delete may still run
    while os.listdir(media.base / "delete_queue") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(media.base / "delete_queue") == []
    assert (tmp_path / "strix.log").read_text().count('"strix started"') == 9


# Load ########################################################################

def start_strix(media, tmp_path, **options):
    """A real strix process over `media`, answering on the port it returns."""
    command, port = strix_command(tmp_path, media.motion_conf, **options)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            api_events(port)
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("strix did not start")


def test_idle_slow_and_vanishing_clients_do_not_stop_others(media, tmp_path):
    media.add_event("Camera1", day(1), "10-00-00", video=os.urandom(8 * 2**20))
    process, port = start_strix(media, tmp_path, threads=4)
    video = f"/motion/Camera1/{day(1)}/10-00-00/video.m4v"
    sockets = []

    def connect(request=b""):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(request)
        sockets.append(client)
        return client

    try:
        for _ in range(100):  # idle keep-alive connections, after one request each
            connect(b"GET /api/cameras/list HTTP/1.1\r\nHost: x\r\n\r\n").recv(4096)
        for _ in range(100):  # connections that never say anything
            connect()
        for headers in (b"", b"Range: bytes=0-\r\n", b"", b"Range: bytes=100-\r\n"):
            connect(b"GET " + video.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        for _ in range(12):  # downloads dropped half way, more than there are threads
            client = connect(b"GET " + video.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(1000)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            client.close()
        for _ in range(20):
            started = time.monotonic()
            assert len(api_events(port)) == 1
            assert time.monotonic() - started < 2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{video}", timeout=5) as reply:
            assert len(reply.read()) == 8 * 2**20
    finally:
        for client in sockets:
            client.close()
        process.kill()
        process.wait()


# The service #################################################################

def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    text = open(os.path.join(HERE, "strix.service")).read()
    for line in ("User=strix", "SupplementaryGroups=motion", "Restart=on-failure",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/motion",
                 "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                 "ExecStart=/opt/strix/.venv/bin/strix -c /etc/strix/strix.cfg"):
        assert f"\n{line}\n" in text, line
    # verify checks that ExecStart's program exists: point it at this checkout's strix.py
    unit = tmp_path / "strix.service"
    unit.write_text(text.replace("ExecStart=/opt/strix/.venv/bin/strix",
                                 f"ExecStart={sys.executable} {HERE}/strix.py"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "strix.service" not in result.stderr, result.stderr


# Login and headers ###########################################################

def basic(user, password):
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="session")
def password_hash():
    return strix.hash_password("correct horse")


def test_hash_password_reads_stdin_and_checks(tmp_path, password_hash):
    result = subprocess.run([sys.executable, os.path.join(HERE, "strix.py"), "--hash-password"],
                            input="s3cret pass\n", capture_output=True, text=True, timeout=60)
    line = result.stdout.strip()
    assert result.returncode == 0 and line.startswith("password_hash = scrypt$16384$8$1$")
    hashed = line.split(" = ")[1]
    assert strix.password_matches("s3cret pass", hashed)
    assert not strix.password_matches("s3cret pas", hashed)
    assert hashed != strix.hash_password("s3cret pass")  # salted
    empty = subprocess.run([sys.executable, os.path.join(HERE, "strix.py"), "--hash-password"],
                           input="\n", capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "empty password is refused" in empty.stderr


def login_app(media, password_hash):
    media.add_event("Camera1", day(1), "10-00-00", video=b"not really a video")
    media.config.user, media.config.password_hash = "me", password_hash
    return media.app()[0]


def test_login_guards_every_route(media, password_hash):
    app = login_app(media, password_hash)
    event = f"Camera1/{day(1)}/10-00-00"
    urls = ["/", "/camera/Camera1", f"/event/{event}", "/api/cameras/list",
            "/api/events/Camera1", f"/motion/{event}/video.m4v", f"/motion/{event}/thumbnail.jpg",
            f"/motion/{event}/", "/static/style.css", "/api/token"]
    for url in urls:
        refused = app.get(url, status=401)
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="strix", charset="UTF-8"'
        assert app.get(url, headers=basic("me", "wrong"), status=401)
        assert app.get(url, headers=basic("me", "correct horse")).status_int == 200, url
    assert app.post(f"/api/event/{event}/keep", status=401)
    part = app.get(f"/motion/{event}/video.m4v", status=206,
                   headers=dict(basic("me", "correct horse"), Range="bytes=0-2"))
    assert part.body == b"not"


def test_failed_logins_are_logged_and_limited_per_address(media, password_hash):
    app = login_app(media, password_hash)
    with structlog.testing.capture_logs() as logs:
        for _ in range(11):
            app.get("/", headers=basic("me", "guess"), status=401,
                    extra_environ={"REMOTE_ADDR": "192.0.2.7"})
        refused = app.get("/", headers=basic("me", "correct horse"), status=429,
                          extra_environ={"REMOTE_ADDR": "192.0.2.7"})
        app.get("/", headers=basic("me", "correct horse"),
                extra_environ={"REMOTE_ADDR": "192.0.2.8", "HTTP_X_FORWARDED_FOR": "192.0.2.7"})
    assert refused.headers["Retry-After"] == "60"
    failures = [entry for entry in logs if entry["event"] == "login failed"]
    assert len(failures) == 11 and failures[0]["client"] == "192.0.2.7"
    assert failures[-1]["blocked"] and not failures[0]["blocked"]
    app.get("/", headers={"Authorization": "Basic %%%\xff"}, status=401)
    assert app.get("/api/cameras/list", status=401).json == {"error": "log in to see the cameras"}


def test_security_headers_on_every_response(media):
    media.add_event("Camera1", day(1), "10-00-00")
    app, _ = media.app()
    for url, status in (("/", 200), ("/api/events/Camera1", 200), ("/nowhere", 404),
                        (f"/motion/Camera1/{day(1)}/10-00-00/thumbnail.jpg", 200),
                        ("/api/events/Camera9", 404), ("/static/style.css", 200)):
        headers = app.get(url, status=status, headers={"Host": "cams.lan:8000"}).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Frame-Options"] == "DENY"
        policy = headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "img-src 'self' cams.lan:8081 cams.lan:8082;" in policy, policy


def test_hostile_headers_get_a_4xx_never_a_500(media):
    media.add_event("Camera1", day(1), "10-00-00", video=b"0123456789")
    app, _ = media.app()
    event = f"/api/event/Camera1/{day(1)}/10-00-00/keep"
    for headers in ({"Origin": "http://\xff\xfe"}, {"Referer": "\xff"},
                    {"X-Strix-Token": "\xff" * 4000}, {"Cookie": "strix_session=\xff;;=;"},
                    {"Origin": "null"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        assert app.post(event, "token=\xff&token=x" * 100, headers=headers,
                        expect_errors=True).status_int == 403
    assert app.post(event, b"\0" * 2**20, expect_errors=True).status_int == 413
    video = f"/motion/Camera1/{day(1)}/10-00-00/video.m4v"
    for value in ("bytes=\xff", "bytes=9-2", "bytes=-", "bytes=99999999999999999999-",
                  "lines=1-2", "bytes=" + "1-2," * 2000):
        assert app.get(video, headers={"Range": value}, expect_errors=True).status_int \
            in (200, 206, 416)
    for name in ("If-Modified-Since", "Host", "Accept-Encoding"):
        assert app.get("/", headers={name: "\xff" * 100}, expect_errors=True).status_int < 500


def test_hostile_urls_get_a_4xx_never_a_500(media):
    media.add_event("Camera1", day(1), "10-00-00")
    app, _ = media.app()
    hostile = ["..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "%2f", "a//b", "%00", "a%00b",
               "x" * 4096, "%ff%fe", "%c0%ae%c0%ae", "<script>", "'\"", "Camera1%2f..",
               f"Camera1/{day(1)}/10-00-00/..", f"Camera1/{day(1)}/..%2f..%2f.."]
    prefixes = ["/", "/camera/", "/event/Camera1/", f"/event/Camera1/{day(1)}/", "/strip/",
                "/api/events/", "/api/event/Camera1/", "/motion/", "/motion/Camera1/",
                "/static/", "/api/cameras/list/"]
    for prefix in prefixes:
        for part in hostile:
            status = app.get(prefix + part, expect_errors=True).status_int
            assert status < 500 and (status >= 400 or prefix == "/"), (prefix + part, status)
    queries = ["limit=-1", "limit=1e9", "offset=99999999999", "start=2026-02-30%2000:00:00",
               "end=%ff", "start=" + "9" * 4000, "limit=5&limit=x", "Camera1=-5",
               "Camera1=99999999999999999999", "debug=%00", "from=2026-99-99"]
    for url in ("/", "/camera/Camera1", f"/event/Camera1/{day(1)}/10-00-00",
                "/api/events/Camera1", "/strip/Camera1"):
        for query in queries:
            status = app.get(f"{url}?{query}", expect_errors=True).status_int
            assert status in (200, 400), (url, query, status)


# Retention by disk space, status and health ##################################

def sized_events(media):
    """Eight events of about 100 kB over two cameras and four days; the oldest is kept.
    Returns [(start, camera, date, name, bytes)] oldest first."""
    events = []
    for number in range(8):
        camera, date = f"Camera{number % 2 + 1}", day(8 - number // 2)
        name = f"{10 + number:02d}-00-00"
        event_dir = media.add_event(camera, date, name, video=b"v" * 100_000,
                                    saved=number == 0)
        events.append((strix.midnight(date) + (10 + number) * 3600, camera, date, name,
                       strix.event_size(event_dir)))
    return sorted(events)


def test_max_media_gb_removes_the_oldest_events_of_all_cameras(media):
    events = sized_events(media)
    limit = sum(size for *_, size in events) // 2
    cache = media.cache(max_media_gb=limit / 2**30)
    cache.measure_sizes()  # a cold start leaves sizes to this background pass
    assert cache.media_bytes() == sum(size for *_, size in events)
    cache.expire()
    wait_for_deletes()
    left, total = list(events), sum(size for *_, size in events)
    for event in events[1:]:  # the oldest is kept
        if total <= limit * 0.98:
            break
        left.remove(event)
        total -= event[-1]
    assert {(e.camera, e.date, e.name) for camera in ("Camera1", "Camera2")
            for e in cache.query(camera, 0, strix.local_now(), 0, 0)} == \
        {(camera, date, name) for _, camera, date, name, _ in left}
    assert cache.media_bytes() == total
    for _, camera, date, name, _ in events:
        assert (media.base / camera / date / name).exists() == ((camera, date, name) in
                                                               {e[1:4] for e in left})
    assert cache.last_expiry["for_space"] == len(events) - len(left)
    assert cache.space_warning is None
    # storing a new event checks again at once, whatever check_minutes says
    media.add_event("Camera1", day(0), "00-00-01", video=b"v" * 150_000)
    cache.set("Camera1", day(0), "00-00-01")
    assert cache.media_bytes() <= limit
    assert cache.get("Camera1", day(0), "00-00-01") is not None
    assert cache.get(*events[0][1:4]).saved


def test_only_kept_events_left_is_a_warning_once_an_hour_and_unhealthy(media):
    for number in range(3):
        media.add_event("Camera1", day(1), f"1{number}-00-00", video=b"v" * 50_000, saved=True)
    cache = media.cache(max_media_gb=10_000 / 2**30)
    cache.measure_sizes()
    with structlog.testing.capture_logs() as logs:
        cache.expire()
        cache.expire()
    warnings = [entry for entry in logs if entry["event"] == "no space to free"]
    assert len(warnings) == 1 and "only kept events are left" in warnings[0]["reason"]
    assert cache.count() == 3
    app = TestApp(strix.make_app(media.config, media.motion, cache))
    reply = app.get("/api/health", status=503).json
    assert reply["ok"] is False and "only kept events are left" in reply["reasons"][0]
    assert app.get("/api/status").json["health"]["ok"] is False
    page = app.get("/status")
    assert "only kept events are left" in page.text
    assert page.html.select_one("a.status-link.warn")["href"] == "/status"
    assert app.get("/").html.select_one("a.status-link.warn")


def test_min_free_percent_reads_the_real_filesystem(media):
    events = sized_events(media)
    cache = media.cache(min_free_percent=99.99)  # a disk can never be that empty
    wait_for_deletes()
    assert [(e.camera, e.date, e.name) for camera in ("Camera1", "Camera2")
            for e in cache.query(camera, 0, strix.local_now(), 0, 0)] == [events[0][1:4]]
    assert cache.space_warning
    assert media.cache(min_free_percent=0).count() == 1


def test_status_and_health_tell_what_strix_does(media, tmp_path):
    events = sized_events(media)
    media.add_event("Camera2", day(0), strix.event_name(
        (strix.local_now() - 600) % 86400 << 8))
    cache = media.cache(keep_days=5)
    cache.measure_sizes()
    expired = [event for event in events[1:] if event[0] < strix.local_now() - 5 * 86400]
    processor = strix.Processor(media.config, media.motion, cache)
    processor.failed.append({"camera": "Camera1", "event": "x/01", "reason": "ffmpeg failed",
                             "time": strix.local_now()})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    cameras = [media.motion.cameras[0]._replace(stream_port=listener.getsockname()[1]),
               media.motion.cameras[1]._replace(stream_port=free_port())]
    streams = strix.StreamWatch(cameras)
    streams.check()
    listener.close()
    strix.remember_problems(None, "warning", {"event": "something odd", "what": "<b>"})
    app = TestApp(strix.make_app(media.config, media.motion, cache, processor, streams))
    status = app.get("/api/status").json
    assert status["version"] == strix.__version__ and status["base"] == str(media.base)
    assert status["disk"]["total"] >= status["disk"]["used"] > 0
    camera1, camera2 = status["cameras"]
    assert camera1["events"] + camera2["events"] == 9 - len(expired)
    assert camera1["bytes"] > 0 and camera2["oldest"] < camera2["newest"]
    assert (camera2["last_hour"], camera2["last_day"]) == (1, 1)
    assert camera1["stream"]["answers"] and not camera2["stream"]["answers"]
    assert status["queue"] == {"waiting": [], "running": [], "failed": [
        dict(processor.failed[0], time=strix.format_time(processor.failed[0]["time"]))]}
    assert status["last_expiry"]["events"] == len(expired) > 0
    assert status["problems"][0]["event"] == "something odd"
    assert app.get("/api/health").json == {"ok": True}
    page = app.get("/status")
    assert "&lt;b&gt;" in page.text and "ffmpeg failed" in page.text
    assert page.html.select_one("a.status-link:not(.warn)")
    queue(media, f"Camera1_{day(0)}_07")  # an entry nobody takes for 11 minutes
    old = time.time() - 660
    os.utime(media.base / "queue" / f"Camera1_{day(0)}_07", (old, old))
    reply = app.get("/api/health", status=503).json
    assert reply == {"ok": False, "reasons": ["processing is stuck: a queue entry waits for"
                                              " 11 minutes"]}
    strix.RECENT_PROBLEMS.clear()


def test_log_file_rotates_at_its_size(tmp_path):
    config = strix.Config(log=str(tmp_path / "strix.log"), log_max_mb=0.01, log_backups=2)
    try:
        strix.setup_logging(config)
        for number in range(500):
            strix.log.info("event processed", camera="Camera1", number=number)
        strix.log.warning("login failed", client="192.0.2.1")
    finally:
        structlog.reset_defaults()
        logging.getLogger("strix").handlers.clear()
    assert sorted(os.listdir(tmp_path)) == ["strix.log", "strix.log.1", "strix.log.2"]
    assert all(os.path.getsize(tmp_path / name) <= 0.01 * 2**20 for name in os.listdir(tmp_path))
    last = json.loads((tmp_path / "strix.log").read_text().splitlines()[-1])
    assert last["event"] == "login failed" and last["level"] == "warning"
    assert strix.RECENT_PROBLEMS[-1]["client"] == "192.0.2.1"
    strix.RECENT_PROBLEMS.clear()


def test_pages_are_reused_until_the_events_change(media):
    media.add_event("Camera1", day(1), "10-00-00")
    app, cache = media.app()
    first = app.get("/camera/Camera1")
    assert app.get("/camera/Camera1").body == first.body
    media.add_event("Camera1", day(1), "11-00-00", saved=True)
    cache.set("Camera1", day(1), "11-00-00")
    for url in ("/camera/Camera1", "/", "/strip/Camera1"):
        assert "11:00:00" in app.get(url).text, url
    cache.set_saved("Camera1", day(1), "10-00-00", True)
    assert app.get("/camera/Camera1").text.count('class="kept"') == 2
    cache.delete("Camera1", day(1), "11-00-00")
    assert "11:00:00" not in app.get("/camera/Camera1").text
    other_host = app.get("/", headers={"Host": "elsewhere:8000"})
    assert "//elsewhere:8081/" in other_host.text


def test_an_event_kept_by_hand_survives_a_warm_start_with_expiry(media):
    media.add_event("Camera1", day(10), "10-00-00")
    media.cache(keep_days=0)  # writes the index files
    old = time.time() - 3600
    os.utime(media.base / "Camera1" / day(10), (old, old))
    media.cache(keep_days=0)  # the index is now trusted, not rescanned
    (media.base / "Camera1" / day(10) / "10-00-00" / ".saved").touch()  # the day's mtime stays
    with structlog.testing.capture_logs() as logs:
        cache = media.cache(keep_days=5)
    assert "'days_rescanned': 0" in str(logs)
    assert cache.get("Camera1", day(10), "10-00-00").saved
    assert (media.base / "Camera1" / day(10) / "10-00-00" / "thumbnail.jpg").exists()


def test_an_event_kept_by_hand_while_the_disk_is_full_is_kept(media):
    media.add_event("Camera1", day(3), "10-00-00", video=b"v" * 50_000)
    cache = media.cache(min_free_percent=99.99)  # never met: expiry wants every event
    media.add_event("Camera1", day(2), "10-00-00", video=b"v" * 50_000)
    cache.set("Camera1", day(2), "10-00-00")  # expired at once, the disk being "full"
    media.add_event("Camera1", day(1), "10-00-00", video=b"v" * 50_000)
    cache._read("Camera1", day(1), "10-00-00")  # listed, not expired yet
    (media.base / "Camera1" / day(1) / "10-00-00" / ".saved").touch()  # kept by hand
    cache.expire()  # finds it kept on disk: back in the cache, no endless expiry
    assert [e.name for e in cache.query("Camera1", 0, strix.local_now(), 0, 0)] == ["10-00-00"]
    assert cache.get("Camera1", day(1), "10-00-00").saved and cache.space_warning
