#!/usr/bin/env python3
"""Strix: a small web appliance for the motion daemon's camera events.

motion writes every motion event as JPEG frames; strix turns each event into a
video and a thumbnail, keeps every event in a fast cache that survives restarts,
expires old footage in the background and serves a web UI and a JSON API on the
home LAN. One process, one config file (strix.cfg).
"""

__version__ = "0.1.0"
__license__ = "MIT"

import argparse
import array
import bisect
import calendar
import collections
import concurrent.futures
import configparser
import errno
import functools
import gc
import glob
import hashlib
import hmac
import io
import json
import logging
import logging.handlers
import multiprocessing
import operator
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import bottle
import structlog
from PIL import Image, ImageDraw

#: Folder holding views/ and static/: beside strix.py in a checkout, share/strix once installed.
ROOT = next((folder for folder in (os.path.dirname(os.path.abspath(__file__)),
                                   os.path.join(sys.prefix, "share", "strix"))
             if os.path.isdir(os.path.join(folder, "views"))),
            os.path.dirname(os.path.abspath(__file__)))
#: Where strix.cfg is looked for when -c is not given, in order.
CONFIG_PATHS = ("strix.cfg", "/etc/strix/strix.cfg")

#: A camera folder under BASE, named after motion's %t (camera_id).
CAMERA_RE = re.compile(r"Camera(\d+)\Z")
#: A day folder under a camera folder.
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
#: A processed event folder: its start time, plus .N when two events start in one second.
EVENT_RE = re.compile(r"(\d{2})-(\d{2})-(\d{2})(?:\.([2-9]|[1-9]\d{1,2}))?\Z")
#: An unprocessed event folder as motion writes it: the event number (%v).
NUMBER_RE = re.compile(r"\d{1,9}\Z")
#: A frame as motion writes it: HH-MM-SS-FF.jpg, debug frames end in m.jpg.
FRAME_RE = re.compile(r"(\d{2})-(\d{2})-(\d{2})-(\d{2})(m?)\.jpg\Z")
#: A queue entry touched by motion's on_event_end: Camera%t_%Y-%m-%d_%v.
QUEUE_RE = re.compile(r"(Camera\d+)_(\d{4}-\d{2}-\d{2})_(\d{1,9})\Z")

#: Event flags, one byte per event in the cache.
HAS_VIDEO, HAS_DEBUG, HAS_THUMBNAIL, SAVED = 1, 2, 4, 8
#: Space expiry frees this many percent (of the disk, or of max_media_gb) beyond the limit.
SPACE_MARGIN_PERCENT = 2
#: The highest .N suffix an event folder may carry (it is stored in one byte).
MAX_SEQUENCE = 255
#: The folders strix keeps under BASE beside the cameras.
QUEUE_DIR, DELETE_DIR, INDEX_DIR = "queue", "delete_queue", ".strix"
#: Time format of the API and of the config.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: A few English names, so titles do not depend on the box's locale.
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

log = structlog.get_logger("strix")


# Configuration ###############################################################

class ConfigError(Exception):
    """A problem with strix.cfg or motion.conf; each line of `problems` names file, line and fix."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _text(value):
    return value


def _integer(low, high=None):
    def parse(value):
        number = int(value)
        if number < low or (high is not None and number > high):
            raise ValueError
        return number
    parse.expects = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
    return parse


def _decimal(low, high):
    def parse(value):
        number = float(value)
        if not low <= number <= high:  # also refuses nan
            raise ValueError
        return number
    parse.expects = f"a number from {low} to {high}"
    return parse


def _encoder(value):
    words = shlex.split(value)
    if not words or not re.match(r"[\w.-]+\Z", words[0]):
        raise ValueError
    return words


def _choice(*choices):
    def parse(value):
        if value.lower() not in choices:
            raise ValueError
        return value.lower()
    parse.expects = "one of " + ", ".join(choices)
    return parse


_encoder.expects = "an ffmpeg encoder name and its options, e.g. libx264 -preset veryfast"
_text.expects = "some text"


def _stream_url(value):
    if any(field not in ("host", "port", "id", "camera_id")
           for field in re.findall(r"\{([^{}]*)\}", value)):
        raise ValueError
    value.format(host="", port=0, id="", camera_id="")  # a stray { or } raises ValueError
    return value


_stream_url.expects = "a URL in which {host}, {port}, {id} and {camera_id} are replaced"

#: strix.cfg's [strix] options: name -> (default, parser). strix.cfg documents each one.
OPTIONS = {
    "motion_config": ("/etc/motion/motion.conf", _text),
    "host": ("127.0.0.1", _text),
    "port": ("8000", _integer(1, 65535)),
    "keep_days": ("45", _integer(0)),
    "check_minutes": ("60", _integer(1)),
    "jobs": (str(max(1, (os.cpu_count() or 2) // 2)), _integer(1, 64)),
    "log": ("-", _text),
    "log_level": ("info", _choice("debug", "info", "warning", "error")),
    "video_codec": ("libx264 -preset veryfast", _encoder),
    "stream_url": ("//{host}:{port}/", _stream_url),
    "min_free_percent": ("10", _decimal(0, 90)),
    "max_media_gb": ("0", _decimal(0, 10**6)),
    "log_max_mb": ("5", _decimal(0.1, 10**4)),
    "log_backups": ("3", _integer(1, 100)),
    "threads": ("8", _integer(2, 256)),
    "connection_limit": ("500", _integer(10, 10000)),
    "channel_timeout": ("30", _integer(5, 3600)),
}


def _password_hash(value):
    if value and not PASSWORD_HASH_RE.match(value):
        raise ValueError
    return value


_password_hash.expects = ("the line `strix --hash-password` prints (a plain password is"
                          " refused)")
#: A hash made by hash_password(): scrypt$N$r$p$salt$hash, hex encoded.
PASSWORD_HASH_RE = re.compile(r"scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([0-9a-f]{32})"
                              r"\$([0-9a-f]{64})\Z")
#: strix.cfg's [auth] options; the login is on when both are set.
AUTH_OPTIONS = {
    "user": ("", _text),
    "password_hash": ("", _password_hash),
}
#: strix.cfg's sections and their options.
SECTIONS = {"strix": OPTIONS, "auth": AUTH_OPTIONS}


class Config:
    """strix.cfg's options as attributes; `path` is the file they came from (None: defaults)."""

    def __init__(self, path=None, **options):
        self.path = path
        known = {name: option for section in SECTIONS.values()
                 for name, option in section.items()}
        for name, (default, parse) in known.items():
            setattr(self, name, parse(default))
        for name, value in options.items():
            if name not in known:
                raise TypeError(f"unknown option {name}")
            setattr(self, name, value)


def _option_lines(text):
    """Map (section, option) to its line number, so errors can point at the line."""
    lines, section = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^]]*)\]", line)
        if header:
            section = header.group(1).strip()
            continue
        option = re.match(r"([^\s#;=:][^=:]*?)\s*[=:]", line)
        if option and section is not None:
            lines.setdefault((section, option.group(1).strip().lower()), number)
    return lines


def read_config(path):
    """Read and validate strix.cfg; raise ConfigError with every problem, each with its line."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: cannot read the config file: {getattr(error, 'strerror', error)}"
                           " (give its path with -c PATH)"]) from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError([f"{path} line {error.lineno}: an option before any section: start"
                           " the file with a line [strix]"]) from None
    except configparser.ParsingError as error:
        raise ConfigError([f"{path} line {line}: cannot read {text.splitlines()[line - 1]!r}:"
                           " write name = value" for line, _ in error.errors]) from None
    except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as error:
        raise ConfigError([f"{path} line {error.lineno}: "
                           f"{getattr(error, 'option', error.section)} is set twice: keep one"
                           ]) from None
    lines, problems, options = _option_lines(text), [], {}
    if not parser.has_section("strix"):
        problems.append(f"{path}: no [strix] section: start the file with a line [strix]")
    for section in parser.sections():
        if section not in SECTIONS:
            problems.append(f"{path} line {_line_of(text, section)}: unknown section [{section}]:"
                            " strix.cfg has the sections [strix] and [auth]")
            continue
        for name, value in parser.items(section):
            where = f"{path} line {lines.get((section, name), '?')}"
            if name not in SECTIONS[section]:
                known = ", ".join(SECTIONS[section])
                problems.append(f"{where}: unknown option {name!r} in [{section}]: the options"
                                f" are {known}")
                continue
            parse = SECTIONS[section][name][1]
            try:
                options[name] = parse(value.strip())
            except ValueError:
                problems.append(f"{where}: {name} = {value!r} is not valid: write {parse.expects}")
    if bool(options.get("user")) != bool(options.get("password_hash")):
        problems.append(f"{path} line {_line_of(text, 'auth')}: [auth] needs both user and"
                        " password_hash (from strix --hash-password), or neither")
    if problems:
        raise ConfigError(problems)
    folder = os.path.dirname(os.path.abspath(path))
    for name in ("motion_config", "log"):
        if name in options and options[name] != "-":
            options[name] = os.path.join(folder, os.path.expanduser(options[name]))
    return Config(path, **options)


def _line_of(text, section):
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r"\s*\[\s*%s\s*\]" % re.escape(section), line):
            return number
    return "?"


def find_config(path):
    """The config file to use: -c PATH, else ./strix.cfg, else /etc/strix/strix.cfg."""
    if path:
        return path
    return next((candidate for candidate in CONFIG_PATHS if os.path.exists(candidate)),
                CONFIG_PATHS[-1])


# Motion configuration ########################################################

#: motion's legacy option names and the current ones they mean.
MOTION_ALIASES = {"thread": "camera", "output_pictures": "picture_output",
                  "output_debug_pictures": "picture_output_motion", "exif_text": "picture_exif",
                  "jpeg_filename": "picture_filename"}
#: The picture_filename strix reads events from.
PICTURE_FILENAME = "%Y-%m-%d/%v/%H-%M-%S-%q"


class Camera(collections.namedtuple("Camera", "id name stream_port")):
    """One of motion's cameras: id is its folder name Camera<N>, N being motion's camera_id."""


class MotionConfig:
    """What strix needs of motion's configuration: the media folder and the cameras."""

    def __init__(self, path, base, cameras, problems):
        self.path, self.base, self.cameras, self.problems = path, base, cameras, problems
        self.camera_ids = {camera.id: camera for camera in cameras}


def _read_motion_file(path, options, cameras, problems, reading):
    """Read one motion config file into `options` ({name: (value, file, line)}), as motion 4.5
    does; each camera include starts from a copy of the options as they stand at that line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError as error:
        problems.append(f"{path}: cannot read motion's config file: {error.strerror}")
        return
    reading = reading + (os.path.realpath(path),)
    for number, line in enumerate(lines, 1):
        if not line or line[0] in "#;":
            continue
        match = re.match(r"[ \t]*([^ \t=]+)[ \t=]*(.*?)[ \t\r]*\Z", line)
        if not match:
            continue
        name, value = MOTION_ALIASES.get(match.group(1), match.group(1)), match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if name in ("camera", "camera_dir"):
            if len(reading) > 1:
                problems.append(f"{path} line {number}: {name} inside a camera file is ignored"
                                " by motion: move it to the main config file")
                continue
            if name == "camera":
                included = [_include_path(path, value)]
            else:
                folder = _include_path(path, value)
                included = sorted(glob.glob(os.path.join(glob.escape(folder), "*.conf")))
                if not os.path.isdir(folder):
                    problems.append(f"{path} line {number}: camera_dir {value}: no such folder")
            for camera_path in included:
                if not os.path.isfile(camera_path):
                    problems.append(f"{path} line {number}: camera {value}: no such file")
                    cameras.append((camera_path, None))
                    continue
                camera_options = dict(options)
                _read_motion_file(camera_path, camera_options, cameras, problems, reading)
                cameras.append((camera_path, camera_options))
        else:
            options[name] = (value, path, number)


def _include_path(including_file, value):
    """motion looks for a relative include beside the including file, then in its working folder."""
    if os.path.isabs(value):
        return value
    beside = os.path.join(os.path.dirname(os.path.abspath(including_file)), value)
    return beside if os.path.exists(beside) else os.path.abspath(value)


def read_motion_config(path):
    """Parse motion.conf and its camera files into a MotionConfig; `problems` lists every
    setting strix cannot work with, each naming the file, the line and what to write."""
    options, cameras, problems = {}, [], []
    _read_motion_file(path, options, cameras, problems, ())
    if not cameras and os.path.isfile(path):
        cameras = [(path, options)]
    cameras = [(camera_path, camera) for camera_path, camera in cameras if camera is not None]
    found, parents = [], set()
    for camera_path, camera in cameras:
        def where(name):
            value, file, line = camera.get(name, (None, camera_path, None))
            return f"{file} line {line}" if line else file

        def value(name):
            return camera.get(name, (None,))[0]

        camera_id = value("camera_id")
        if camera_id is None or not re.match(r"[1-9]\d{0,8}\Z", camera_id.strip()):
            problems.append(f"{where('camera_id')}: each camera needs a camera_id: write "
                            f"`camera_id N` (N a number from 1, unique per camera)")
            continue
        camera_id = camera_id.strip()
        target_dir = os.path.normpath(value("target_dir") or "")
        if os.path.basename(target_dir) != f"Camera{camera_id}" or not os.path.isabs(target_dir):
            problems.append(f"{where('target_dir')}: target_dir must be BASE/Camera{camera_id}"
                            f" (camera_id {camera_id}): write `target_dir /var/lib/motion/"
                            f"Camera{camera_id}` with your media folder")
        else:
            parents.add(os.path.dirname(target_dir))
        port = (value("stream_port") or "").strip()
        if not re.match(r"\d{1,5}\Z", port) or not 0 < int(port) < 65536:
            problems.append(f"{where('stream_port')}: Camera{camera_id} needs a stream port for"
                            f" its live view: write `stream_port {8080 + int(camera_id)}`")
            port = "0"
        if value("picture_output") != "on":
            problems.append(f"{where('picture_output')}: strix builds events from motion's"
                            " pictures: write `picture_output on`")
        if value("picture_filename") != PICTURE_FILENAME:
            problems.append(f"{where('picture_filename')}: write `picture_filename "
                            f"{PICTURE_FILENAME}`")
        found.append((camera_id, value("camera_name"), int(port), where("on_event_end"),
                      value("on_event_end") or ""))
    base = parents.pop() if len(parents) == 1 else None
    if len(parents) > 1:
        problems.append(f"{path}: every camera's target_dir must be in one media folder, found "
                        + ", ".join(sorted(parents)))
        base = None
    ids = [camera_id for camera_id, *_ in found]
    for camera_id in sorted(set(ids)):
        if ids.count(camera_id) > 1:
            problems.append(f"{path}: camera_id {camera_id} is used by {ids.count(camera_id)}"
                            " cameras: give each camera its own camera_id")
    want = f"{base or 'BASE'}/{QUEUE_DIR}/Camera%t_%Y-%m-%d_%v"
    for camera_id, name, port, where_event_end, event_end in found:
        words = event_end.split()
        if len(words) != 2 or os.path.basename(words[0]) != "touch" or words[1] != want:
            problems.append(f"{where_event_end}: strix learns of each event from motion's"
                            f" on_event_end: write `on_event_end touch {want}`")
    if not found and not problems:
        problems.append(f"{path}: no camera found: add `camera /etc/motion/camera1.conf` lines")
    cameras = sorted({Camera(f"Camera{camera_id}", name or f"Camera{camera_id}", port)
                      for camera_id, name, port, *_ in found}, key=lambda c: (c.stream_port, c.id))
    return MotionConfig(path, base, cameras, problems)


# Events ######################################################################
# On disk, BASE/CameraN/YYYY-MM-DD/HH-MM-SS/ holds an event's frames, video.m4v,
# debug/video.m4v, thumbnail.jpg and .saved when kept. Times are local wall-clock
# seconds (calendar.timegm of local time), so names, queries and expiry agree
# whatever the time zone and daylight saving do.

def local_now():
    """Local wall-clock time as seconds since 1970, the clock event folders are named by."""
    return calendar.timegm(time.localtime())


def parse_time(text):
    """'YYYY-MM-DD HH:MM:SS' as local wall-clock seconds; ValueError when malformed."""
    if not re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\Z", text):
        raise ValueError(text)
    return calendar.timegm(time.strptime(text, TIME_FORMAT))


def format_time(seconds):
    return time.strftime(TIME_FORMAT, time.gmtime(seconds))


def event_title(seconds):
    """A title such as 'Sat Nov 28 03:12:34 AM', in English whatever the locale."""
    moment = time.gmtime(seconds)
    hour = moment.tm_hour % 12 or 12
    return (f"{WEEKDAYS[moment.tm_wday]} {MONTHS[moment.tm_mon - 1]} {moment.tm_mday:02d} "
            f"{hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} "
            f"{'AM' if moment.tm_hour < 12 else 'PM'}")


def date_of(seconds):
    """The 'YYYY-MM-DD' of wall-clock `seconds`, as motion names day folders."""
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


@functools.lru_cache(maxsize=1024)
def midnight(date):
    """The wall-clock seconds at the start of 'YYYY-MM-DD'; ValueError when not a real date."""
    return calendar.timegm(time.strptime(date, "%Y-%m-%d"))


def event_key(name):
    """An event folder name as its sort key: seconds since midnight << 8 | the .N suffix."""
    match = EVENT_RE.match(name)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59 \
            or int(match.group(3)) > 59:
        return None
    hours, minutes, seconds, sequence = match.groups()
    second = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return second << 8 | int(sequence or 0)


def event_name(key):
    second, sequence = key >> 8, key & MAX_SEQUENCE
    name = f"{second // 3600:02d}-{second // 60 % 60:02d}-{second % 60:02d}"
    return f"{name}.{sequence}" if sequence else name


def frame_second(name):
    """The second of the day a frame name (HH-MM-SS-FF.jpg) was taken at."""
    return int(name[0:2]) * 3600 + int(name[3:5]) * 60 + int(name[6:8])


def read_event(event_dir, start_second):
    """Read one processed event folder: (length in seconds, flags)."""
    names = set(os.listdir(event_dir))
    frames = sorted(name for name in names if len(name) == 15 and FRAME_RE.match(name))
    flags = ((HAS_VIDEO if "video.m4v" in names else 0)
             | (HAS_DEBUG if "debug" in names else 0)
             | (HAS_THUMBNAIL if "thumbnail.jpg" in names else 0)
             | (SAVED if ".saved" in names else 0))
    length = 0
    if frames:
        # Frames named before the start were taken after midnight: the event crossed it.
        start_name = event_name(start_second << 8)
        after_midnight = bisect.bisect_left(frames, start_name)
        if after_midnight:
            length = frame_second(frames[after_midnight - 1]) + 86400 - start_second
        else:
            length = frame_second(frames[-1]) - start_second
    return max(length, 0), flags


def event_size(event_dir):
    """Bytes of an event folder's files, its debug folder's included (symlinks not
    followed)."""
    total = 0
    with os.scandir(event_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
            elif entry.name == "debug" and entry.is_dir(follow_symlinks=False):
                total += event_size(entry.path)
    return total


class Event(collections.namedtuple("Event", "camera date name start length flags")):
    """One event as queries return it; `start` in local wall-clock seconds."""

    @property
    def url(self):
        return f"/motion/{self.camera}/{self.date}/{self.name}"

    @property
    def saved(self):
        return bool(self.flags & SAVED)

    def json(self):
        url = self.url
        return {"start": format_time(self.start), "end": format_time(self.start + self.length),
                "title": event_title(self.start), "video": f"{url}/video.m4v",
                "debug_video": f"{url}/debug/video.m4v", "thumbnail": f"{url}/thumbnail.jpg",
                "images": f"{url}/", "saved": self.saved}


class Day:
    """One camera-day's events in start order, as parallel arrays: 100,000 events take a
    few MB instead of the hundreds a dict per event would. `sizes` holds each event's
    bytes on disk (-1: not measured yet), `bytes` their running total."""

    __slots__ = ("date", "midnight", "keys", "lengths", "flags", "sizes", "bytes", "mtime",
                 "pending")

    def __init__(self, date, mtime=0, keys=(), lengths=(), flags=(), sizes=None, pending=()):
        self.date, self.midnight, self.mtime = sys.intern(date), midnight(date), mtime
        self.keys, self.lengths = array.array("q", keys), array.array("l", lengths)
        self.flags, self.pending = array.array("B", flags), list(pending)
        self.sizes = array.array("q", [-1] * len(self.keys) if sizes is None else sizes)
        self.bytes = sum(self.sizes) + self.sizes.count(-1)

    @classmethod
    def from_rows(cls, date, mtime, rows, pending=()):
        """A Day from (key, length, flags, size) rows in any order."""
        columns = list(zip(*sorted(rows))) or [(), (), (), ()]
        return cls(date, mtime, *columns, pending)

    @classmethod
    def from_index(cls, date, index):
        """A Day from an index file's JSON; ValueError, TypeError or OverflowError when its
        values have the wrong types, ranges or order."""
        day = cls(date, index["mtime"], index["keys"], index["lengths"], index["flags"],
                  index["sizes"], [name for name in index["pending"] if NUMBER_RE.match(name)])
        keys = day.keys
        if not len(keys) == len(day.lengths) == len(day.flags) == len(day.sizes) or keys and (
                keys[0] < 0 or keys[-1] >= 86400 << 8 or min(day.lengths) < 0
                or min(day.sizes) < -1 or not all(map(operator.lt, keys, keys[1:]))):
            raise ValueError("event columns out of range or order")
        return day

    def copy(self):
        return Day(self.date, self.mtime, self.keys, self.lengths, self.flags, self.sizes,
                   self.pending)

    def __len__(self):
        return len(self.keys)

    def find(self, key):
        index = bisect.bisect_left(self.keys, key)
        return index if index < len(self.keys) and self.keys[index] == key else None

    def put(self, key, length, flags, size):
        index = self.find(key)
        if index is None:
            index = bisect.bisect_left(self.keys, key)
            self.keys.insert(index, key)
            self.lengths.insert(index, length)
            self.flags.insert(index, flags)
            self.sizes.insert(index, -1)
        self.lengths[index], self.flags[index] = length, flags
        self.set_size(index, size)

    def set_size(self, index, size):
        self.bytes += max(size, 0) - max(self.sizes[index], 0)
        self.sizes[index] = size

    def drop(self, index):
        self.set_size(index, -1)
        del self.keys[index], self.lengths[index], self.flags[index], self.sizes[index]

    def event(self, camera, index):
        key = self.keys[index]
        return Event(camera, self.date, event_name(key), self.midnight + (key >> 8),
                     self.lengths[index], self.flags[index])

    def index(self):
        """The Day as an index file's JSON values (see EventCache._load_day)."""
        return {"mtime": self.mtime, "keys": self.keys.tolist(),
                "lengths": self.lengths.tolist(), "flags": self.flags.tolist(),
                "sizes": self.sizes.tolist(), "pending": self.pending}


#: "HH:MM", "hh:MM" (12-hour clock) and "HH-MM" for each minute of a day, and ":SS" and
#: "-SS" for each second of a minute: lookups that make _events_json fast.
CLOCK_MINUTES = tuple("%02d:%02d" % (minute // 60, minute % 60) for minute in range(1440))
CLOCK_MINUTES_12H = tuple("%02d:%02d" % (minute // 60 % 12 or 12, minute % 60)
                          for minute in range(1440))
NAME_MINUTES = tuple(clock.replace(":", "-") for clock in CLOCK_MINUTES)
CLOCK_SECONDS = tuple(":%02d" % second for second in range(60))
NAME_SECONDS = tuple("-%02d" % second for second in range(60))


def _events_json(camera, date, midnight, keys, lengths, flags):
    """Event.json() of each event of one day's slice as the JSON text of a list's items,
    the same as json.dumps would give, five times faster: the API's limit=0 lists tens of
    thousands."""
    url, weekday = f"/motion/{camera}/{date}/", event_title(midnight)[:11]
    texts = []
    # the lookups as local names: this loop runs once per event listed
    minutes, minutes_12h, names = CLOCK_MINUTES, CLOCK_MINUTES_12H, NAME_MINUTES
    seconds_of, name_seconds = CLOCK_SECONDS, NAME_SECONDS
    for key, length, flag in zip(keys, lengths, flags):
        second = key >> 8
        minute, clock_second = second // 60, seconds_of[second % 60]
        end = second + length
        end_text = (f"{date} {minutes[end // 60]}{seconds_of[end % 60]}"
                    if end < 86400 else format_time(midnight + end))
        path = url + (event_name(key) if key & MAX_SEQUENCE
                      else f"{names[minute]}{name_seconds[second % 60]}")
        texts.append(
            f'{{"start": "{date} {minutes[minute]}{clock_second}", "end": "{end_text}", '
            f'"title": "{weekday}{minutes_12h[minute]}{clock_second} '
            f'{"AM" if minute < 720 else "PM"}", "video": "{path}/video.m4v", '
            f'"debug_video": "{path}/debug/video.m4v", "thumbnail": "{path}/thumbnail.jpg", '
            f'"images": "{path}/", "saved": {"true" if flag & SAVED else "false"}}}')
    return ", ".join(texts)


def _safe_dir(path, real_base):
    """True when `path` is a real folder inside BASE, no symlink on the way."""
    real = os.path.realpath(path)
    return real == os.path.join(real_base, os.path.relpath(path, real_base)) \
        and real.startswith(real_base + os.sep) and os.path.isdir(real)


def delete_in_background(folder):
    """Delete `folder` in a short-lived child process, so no request waits on a slow rm -r."""
    multiprocessing.active_children()  # reaps the children that have finished
    process = multiprocessing.get_context("fork").Process(
        target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True}, daemon=True)
    process.start()
    return process


def write_atomically(path, data):
    """Write a file so that a crash leaves the old or the new version, never half of one."""
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# The event cache #############################################################
# Every event in memory (one Day of arrays per camera and date), loaded at start from
# per-day index files, changed by processing, keep/delete and expiry, queried by the web.

class EventCache:
    """Every camera's events in memory, under one lock, and in one index file per camera-day
    under BASE/.strix (trusted while the day folder's mtime is unchanged), so a restart
    reads a few hundred small files instead of walking every event folder.

    `lock` guards the in-memory data and is held only for short, memory-only work;
    `disk_lock` serialises the changes that touch disk and memory together.
    """

    def __init__(self, base, camera_ids, keep_days=45, check_minutes=60, min_free_percent=0,
                 max_media_gb=0):
        self.base, self.real_base = base, os.path.realpath(base)
        self.keep_days, self.check_seconds = keep_days, check_minutes * 60
        self.min_free_percent, self.max_media_bytes = min_free_percent, max_media_gb * 2**30
        self.deleting = []  # (background delete process, bytes it deletes)
        self.space_warning, self.next_space_warning = None, 0
        self.lock, self.disk_lock = threading.Lock(), threading.RLock()
        self.days = {camera: {} for camera in camera_ids}
        self.dates = {camera: [] for camera in camera_ids}
        self.ready = threading.Event()
        self.generation = 0
        self.next_expiry = 0
        self.last_expiry = None

    # Loading

    def preload(self):
        """Load every camera's days, newest first (so the home page is ready first), clean up
        what a crash left in the delete queue, then run expiry once."""
        started = time.monotonic()
        for folder in (QUEUE_DIR, DELETE_DIR, INDEX_DIR):
            os.makedirs(os.path.join(self.base, folder), exist_ok=True)
        leftovers = os.listdir(os.path.join(self.base, DELETE_DIR))
        for name in leftovers:
            delete_in_background(os.path.join(self.base, DELETE_DIR, name))
        if leftovers:
            log.info("delete queue emptied", folders=len(leftovers))
        todo = sorted(((date, camera) for camera in self.days for date in self._disk_dates(camera)),
                      reverse=True)
        count, stale = 0, 0
        for number, (date, camera) in enumerate(todo, 1):
            try:
                day, from_index = self._load_day(camera, date)
            except OSError as error:  # the folder went away meanwhile
                log.warning("day folder unreadable", camera=camera, date=date, error=str(error))
                continue
            stale += not from_index
            count += len(day)
            with self.lock:
                self._store_day(camera, day)
            if number % 100 == 0:
                log.info("preload progress", days=number, of=len(todo), events=count,
                         seconds=round(time.monotonic() - started, 2))
        self.ready.set()
        log.info("preload done", events=count, days=len(todo), days_rescanned=stale,
                 seconds=round(time.monotonic() - started, 2))
        self.expire()

    def _disk_dates(self, camera):
        folder = os.path.join(self.base, camera)
        if not _safe_dir(folder, self.real_base):
            if os.path.lexists(folder):
                log.warning("camera folder refused: not a real folder inside BASE", path=folder)
            return []
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries
                    if DATE_RE.match(entry.name) and entry.is_dir(follow_symlinks=False)]

    def _index_path(self, camera, date):
        return os.path.join(self.base, INDEX_DIR, camera, f"{date}.json")

    def _load_day(self, camera, date):
        """A Day from its index file when that is current, else from a scan of the folder."""
        day_dir = os.path.join(self.base, camera, date)
        try:
            mtime = os.stat(day_dir).st_mtime_ns
            with open(self._index_path(camera, date), "rb") as file:
                index = json.load(file)
            if index["mtime"] == mtime and index["written"] > mtime + 2 * 10**9:
                return Day.from_index(date, index), True
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, OverflowError) as error:
            log.warning("index file unreadable, folder rescanned", camera=camera, date=date,
                        error=str(error))
        return self.scan_day(camera, date), False

    def scan_day(self, camera, date):
        """Read a day folder from disk and write its index file."""
        day_dir = os.path.join(self.base, camera, date)
        mtime, events, pending = os.stat(day_dir).st_mtime_ns, [], []
        with os.scandir(day_dir) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                key = event_key(entry.name)
                if key is not None:
                    try:
                        events.append((key, *read_event(entry.path, key >> 8), -1))
                    except OSError:  # deleted meanwhile
                        continue
                elif NUMBER_RE.match(entry.name):
                    pending.append(entry.name)
        day = Day.from_rows(date, mtime, events, pending)
        self._write_index(camera, day)
        return day

    def _write_index(self, camera, day):
        index = dict(day.index(), written=time.time_ns())
        path = self._index_path(camera, day.date)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, json.dumps(index, separators=(",", ":")).encode())

    def _store_day(self, camera, day):
        """Put a Day in memory (under self.lock), or drop it when it holds nothing; every
        change of the events goes through here and counts in `generation`."""
        self.generation += 1
        days, dates = self.days[camera], self.dates[camera]
        if day.date not in days:
            bisect.insort(dates, day.date)
        days[day.date] = day
        if not day.keys and not day.pending:
            del days[day.date]
            dates.remove(day.date)

    def pending(self):
        """Unprocessed (numbered) event folders: [(camera, date, number)]."""
        with self.lock:
            return [(camera, date, number) for camera, days in self.days.items()
                    for date, day in days.items() for number in day.pending]

    def media_bytes(self, camera=None):
        """Bytes of every event (of `camera`) on disk, as far as they are measured."""
        with self.lock:
            return sum(day.bytes for cam in ([camera] if camera else self.days)
                       for day in self.days[cam].values())

    def measure_sizes(self):
        """Measure the events whose size is not known (a cold start leaves them so, to be
        quick), newest days first, and keep the sizes in the index files."""
        with self.lock:
            todo = sorted(((date, camera) for camera in self.days
                           for date in self.dates[camera]), reverse=True)
        for date, camera in todo:
            with self.lock:
                day = self.days[camera].get(date)
                unknown = [key for key, size in zip(day.keys, day.sizes) if size < 0] \
                    if day else []
            sizes = {}
            for key in unknown:
                try:
                    sizes[key] = event_size(os.path.join(self.base, camera, date,
                                                         event_name(key)))
                except OSError:
                    continue
            if not sizes:
                continue
            with self.disk_lock:
                with self.lock:
                    day = self.days[camera].get(date)
                    for key, size in sizes.items():
                        index = day.find(key) if day else None
                        if index is not None and day.sizes[index] < 0:
                            day.set_size(index, size)
                    snapshot = day and day.copy()
                if snapshot:
                    self._write_index(camera, snapshot)

    def refresh(self):
        """Re-read every day folder whose mtime changed behind strix's back (a folder
        deleted or added by hand); strix's own changes keep the mtime it remembers."""
        changed = 0
        with self.disk_lock:
            for camera in self.days:
                with self.lock:
                    known = {date: day.mtime for date, day in self.days[camera].items()}
                for date in self._disk_dates(camera):
                    try:
                        if known.pop(date, None) != os.stat(
                                os.path.join(self.base, camera, date)).st_mtime_ns:
                            day = self.scan_day(camera, date)
                            with self.lock:
                                self._store_day(camera, day)
                            changed += 1
                    except FileNotFoundError:
                        known[date] = None
                for date in known:  # day folders gone from disk
                    with self.lock:
                        self._store_day(camera, Day(date))
                    changed += 1
        if changed:
            log.info("day folders changed on disk, rescanned", days=changed)
        return changed

    # Changes

    def set(self, camera, date, name, numbered_in=None):
        """Store (or update) one processed event from its folder on disk, write its day's
        index file, and expire events when check_minutes have passed or the disk is too
        full. `numbered_in` is the day folder it was processed in, when that is not the
        day it started."""
        self._read(camera, date, name, numbered_in)
        if time.monotonic() >= self.next_expiry or self.space_needed() > 0:
            self.expire()

    def _read(self, camera, date, name, numbered_in=None):
        """set() without the expiry, which expiry itself uses."""
        key = event_key(name)
        with self.disk_lock:
            event_dir = os.path.join(self.base, camera, date, name)
            length, flags = read_event(event_dir, key >> 8)
            size = event_size(event_dir)
            with self.lock:
                day = self.days[camera].get(date) or Day(date)
                day.put(key, length, flags, size)
                self._store_day(camera, day)
            for changed in {date, numbered_in or date}:
                self._sync_day(camera, changed)

    def _sync_day(self, camera, date):
        """After strix changed a day folder: remember its new mtime and rewrite its index."""
        day_dir = os.path.join(self.base, camera, date)
        with self.lock:
            day = self.days[camera].get(date)
            if day is None:
                return
            day.mtime = os.stat(day_dir).st_mtime_ns if os.path.isdir(day_dir) else 0
            day.pending = [number for number in day.pending
                           if os.path.isdir(os.path.join(day_dir, number))]
            snapshot = day.copy()
        self._write_index(camera, snapshot)

    def set_saved(self, camera, date, name, saved):
        """Keep an event (never expired) or let it expire again; False when it is unknown."""
        event = self.get(camera, date, name)
        if event is None:
            return False
        marker = os.path.join(self.base, camera, date, name, ".saved")
        if saved:
            open(marker, "a").close()
        elif os.path.exists(marker):
            os.remove(marker)
        self.set(camera, date, name)
        return True

    def delete(self, camera, date, name):
        """Delete one event (kept or not) through the delete queue; False when unknown."""
        with self.disk_lock:
            if self.get(camera, date, name) is None:
                return False
            self._remove([(camera, date, name)], keep_saved=False)
        return True

    def expire(self):
        """Remove the events older than keep_days; then, while the disk has less than
        min_free_percent free or the media take more than max_media_gb, the oldest events
        of all cameras. Never a kept one. They leave the cache at once; their folders are
        renamed into the delete queue and deleted by a background process."""
        self.next_expiry = time.monotonic() + self.check_seconds
        started = time.monotonic()
        with self.disk_lock:
            too_old = self._older_than(local_now() - self.keep_days * 86400) \
                if self.keep_days else []
            moved = self._remove(too_old)
            needed = self.space_needed()
            for_space = self._oldest(needed) if needed > 0 else []
            moved += self._remove(for_space)
        if needed > 0 and self.space_needed() > 0:
            self.space_warning = ("the disk is too full and only kept events are left to"
                                  " delete: delete some kept events or raise the limits")
            if time.monotonic() >= self.next_space_warning:
                self.next_space_warning = time.monotonic() + 3600
                log.warning("no space to free", reason=self.space_warning,
                            bytes_needed=self.space_needed())
        else:
            self.space_warning = None
        self.last_expiry = {"time": format_time(local_now()), "events": len(too_old)
                            + len(for_space), "for_space": len(for_space), "folders": moved,
                            "seconds": round(time.monotonic() - started, 3)}
        if too_old or for_space:
            log.info("expired", **self.last_expiry)

    def space_needed(self):
        """Bytes to delete so that the disk has min_free_percent free and the media fit in
        max_media_gb, each with a margin; 0 when both hold. Cheap: statvfs and the
        running totals, never a walk of the folders."""
        needed = 0
        if self.min_free_percent:
            disk = os.statvfs(self.base)
            size = disk.f_blocks * disk.f_frsize
            free = disk.f_bavail * disk.f_frsize + self.deleting_bytes()
            if free < size * self.min_free_percent / 100:
                needed = size * (self.min_free_percent + SPACE_MARGIN_PERCENT) / 100 - free
        media = self.media_bytes()
        if self.max_media_bytes and media > self.max_media_bytes:
            needed = max(needed, media - self.max_media_bytes * (1 - SPACE_MARGIN_PERCENT / 100))
        return int(needed)

    def deleting_bytes(self):
        """Bytes in the delete queue that background processes have yet to delete."""
        with self.lock:
            self.deleting = [(process, size) for process, size in self.deleting
                             if process.is_alive()]
            return sum(size for _, size in self.deleting)

    def _days(self, wanted):
        """Copies (camera, date, midnight, keys, flags, sizes) of the days for which
        wanted(date) is true, oldest first, in one short hold of the lock (array copies)."""
        with self.lock:
            return sorted((day.date, camera, day.midnight, day.keys[:], day.flags[:],
                           day.sizes[:]) for camera, days in self.days.items()
                          for date, day in days.items() if wanted(date))

    def _older_than(self, cutoff):
        """[(camera, date, name)] of the events that are not kept and started before cutoff."""
        cutoff_date = date_of(cutoff)
        found = []
        for date, camera, midnight, keys, flags, _ in self._days(lambda date:
                                                                 date <= cutoff_date):
            last = bisect.bisect_left(keys, (cutoff - midnight) << 8)
            found += [(camera, date, event_name(keys[index])) for index in range(last)
                      if not flags[index] & SAVED]
        return found

    def _oldest(self, needed):
        """[(camera, date, name)] of the oldest events of all cameras, not kept, whose
        sizes add up to `needed` bytes (or all there are)."""
        found, total = [], 0
        for date, camera, _, keys, flags, sizes in self._days(lambda date: True):
            for key, flag, size in zip(keys, flags, sizes):
                if flag & SAVED:
                    continue
                name = event_name(key)
                if size < 0:
                    try:
                        size = event_size(os.path.join(self.base, camera, date, name))
                    except OSError:
                        size = 0
                found.append((camera, date, name))
                total += size
                if total >= needed:
                    return found
        return found

    def _remove(self, events, keep_saved=True):
        """Take events [(camera, date, name)] out of the cache, rename their folders into
        the delete queue and rewrite their days' index files; day folders left empty are
        removed. Returns how many folders were moved."""
        by_day = collections.defaultdict(set)
        for camera, date, name in events:
            by_day[camera, date].add(event_key(name))
        freed = 0
        for (camera, date), keys in by_day.items():
            with self.lock:  # one day at a time keeps the lock short
                day = self.days[camera].get(date)
                if day is None:
                    continue
                rows = list(zip(day.keys, day.lengths, day.flags, day.sizes))
                freed += sum(max(row[3], 0) for row in rows if row[0] in keys)
                self._store_day(camera, Day.from_rows(
                    date, day.mtime, [row for row in rows if row[0] not in keys], day.pending))
            time.sleep(0)  # let a request waiting for the lock have it before the next day
        moved = self._move_to_delete_queue(events, keep_saved, freed)
        for camera, date in sorted(by_day):
            self._sync_day(camera, date)
            if self.days[camera].get(date) is None:
                self._remove_empty_day(camera, date)
        return moved

    def _move_to_delete_queue(self, events, keep_saved, size):
        """Rename event folders into BASE/delete_queue/<tmp>/CameraN/DATE/ and delete that in
        the background (`size`: its bytes). With keep_saved, a folder found kept (.saved)
        on disk goes back in the cache instead."""
        if not events:
            return 0
        batch = tempfile.mkdtemp(dir=os.path.join(self.base, DELETE_DIR))
        moved = 0
        for camera, date, name in events:
            event_dir = os.path.join(self.base, camera, date, name)
            if not _safe_dir(event_dir, self.real_base):
                log.warning("refused to delete: not a real folder inside BASE", path=event_dir)
                continue
            if keep_saved and os.path.exists(os.path.join(event_dir, ".saved")):
                self._read(camera, date, name)
                continue
            target = os.path.join(batch, camera, date)
            os.makedirs(target, exist_ok=True)
            os.rename(event_dir, os.path.join(target, name))
            moved += 1
        process = delete_in_background(batch)
        with self.lock:
            self.deleting.append((process, size))
        return moved

    def _remove_empty_day(self, camera, date):
        day_dir = os.path.join(self.base, camera, date)
        try:
            os.rmdir(day_dir)
        except OSError:
            return  # not empty: pending or unknown folders stay
        try:
            os.remove(self._index_path(camera, date))
        except FileNotFoundError:
            pass

    # Queries

    def get(self, camera, date, name):
        """One event, or None."""
        key = event_key(name)
        with self.lock:
            day = self.days.get(camera, {}).get(date)
            index = day.find(key) if day and key is not None else None
            return day.event(camera, index) if index is not None else None

    def _select(self, camera, start, end, offset, limit):
        """Copies of the slices of each day holding the newest events of `camera` that start
        in [start, end], skipping `offset`, at most `limit` (0: all), oldest first, as
        (date, midnight, keys, lengths, flags). Costs the days in range plus the events
        returned; the lock is held only while slicing."""
        start_date = date_of(max(start, 0))
        end_date = date_of(max(end, 0))
        slices, wanted = [], limit or sys.maxsize
        with self.lock:
            dates, days = self.dates[camera], self.days[camera]
            low = bisect.bisect_left(dates, start_date)
            for position in range(bisect.bisect_right(dates, end_date) - 1, low - 1, -1):
                day = days[dates[position]]
                first = bisect.bisect_left(day.keys, (start - day.midnight) << 8)
                last = bisect.bisect_left(day.keys, (end - day.midnight + 1) << 8) - offset
                offset = max(0, first - last)
                if last <= first:
                    continue
                first = max(first, last - wanted)
                wanted -= last - first
                slices.append((day.date, day.midnight, day.keys[first:last],
                               day.lengths[first:last], day.flags[first:last]))
                if not wanted:
                    break
        slices.reverse()
        return slices

    def query(self, camera, start, end, offset=0, limit=10):
        """The newest events of `camera` starting in [start, end], skipping `offset`, at most
        `limit` (0: all), as Events, oldest first."""
        return [Event(camera, date, event_name(key), midnight + (key >> 8), length, flags)
                for date, midnight, keys, lengths, flags in self._select(camera, start, end,
                                                                         offset, limit)
                for key, length, flags in zip(keys, lengths, flags)]

    def query_json(self, camera, start, end, offset=0, limit=10):
        """The same events as query(), as JSON text built straight from the arrays: one
        string of comma-separated Event.json() objects per day, so that a long answer
        (25,000 events, 9 MB) is sent day by day and never copied whole."""
        return [text for text in (_events_json(camera, *selected) for selected
                                  in self._select(camera, start, end, offset, limit)) if text]

    def neighbours(self, event):
        """The events just before and after `event` of the same camera (None at either end)."""
        with self.lock:
            dates, days = self.dates[event.camera], self.days[event.camera]
            position = bisect.bisect_left(dates, event.date)
            index = days[event.date].find(event_key(event.name)) if event.date in days else None
            if index is None:
                return None, None
            return (self._step(event.camera, position, index, -1),
                    self._step(event.camera, position, index, 1))

    def _step(self, camera, position, index, direction):
        dates, days = self.dates[camera], self.days[camera]
        index += direction
        while 0 <= position < len(dates):
            day = days[dates[position]]
            if 0 <= index < len(day):
                return day.event(camera, index)
            position += direction
            if 0 <= position < len(dates):
                index = 0 if direction > 0 else len(days[dates[position]]) - 1
        return None

    def count(self, camera=None):
        with self.lock:
            return sum(len(day) for cam in ([camera] if camera else self.days)
                       for day in self.days[cam].values())

    def count_since(self, camera, start):
        """How many events of `camera` started at `start` or later."""
        start_date = date_of(start)
        with self.lock:
            dates, days = self.dates[camera], self.days[camera]
            return sum(len(days[date]) - bisect.bisect_left(
                days[date].keys, max(0, start - days[date].midnight) << 8)
                for date in dates[bisect.bisect_left(dates, start_date):])

    def ends(self, camera):
        """The oldest and the newest event of `camera` (None, None without events)."""
        with self.lock:
            days = [self.days[camera][date] for date in self.dates[camera]
                    if len(self.days[camera][date])]
            return (days[0].event(camera, 0), days[-1].event(camera, -1)) if days else \
                (None, None)

    def day_counts(self, camera):
        """[(date, events)] of every day of `camera` that has events, newest first."""
        with self.lock:
            days = self.days[camera]
            return [(date, len(days[date])) for date in reversed(self.dates[camera])
                    if len(days[date])]

    def hourly_counts(self, camera, dates):
        """{date: [events starting in each hour 0-23]} of `camera` for the given dates."""
        counts = {}
        with self.lock:
            for date in dates:
                day = self.days[camera].get(date)
                edges = [bisect.bisect_left(day.keys, hour * 3600 << 8) if day else 0
                         for hour in range(25)]
                counts[date] = [edges[hour + 1] - edges[hour] for hour in range(24)]
        return counts


# Processing ##################################################################
# motion writes BASE/CameraN/DATE/<number>/ and touches BASE/queue/CameraN_DATE_<number>
# when the event ends; strix encodes the videos, picks a thumbnail and renames the
# folder to the event's start time. Every step can be redone, so a crash or restart
# half way leaves a numbered folder that the next start processes again.

#: Events longer than this many seconds become a timelapse, played TIMELAPSE times faster.
TIMELAPSE_AFTER, TIMELAPSE = 300, 16
#: Frame rate assumed when the frames' timestamps do not tell one.
FALLBACK_FPS = 5
#: A numbered folder changed less than this many seconds ago may still be written by motion.
BUSY_SECONDS = 120
#: Seconds around midnight within which an event is taken to cross it.
MIDNIGHT_MARGIN = 600


def frame_names(folder, debug=False):
    """The frames of an event folder in name order (debug frames when `debug`)."""
    suffix = "m.jpg" if debug else ".jpg"
    return sorted(name for name in os.listdir(folder) if FRAME_RE.match(name)
                  and name.endswith(suffix) and (debug or not name.endswith("m.jpg")))


def in_time_order(frames):
    """Frames of one event in the order they were taken: when an event crosses midnight,
    the frames named 23:5x come before those named 00:0x."""
    if frames and frame_second(frames[0]) < MIDNIGHT_MARGIN \
            and frame_second(frames[-1]) >= 86400 - MIDNIGHT_MARGIN:
        evening = bisect.bisect_left(frames, "12")
        return frames[evening:] + frames[:evening]
    return frames


def frames_per_second(frames):
    """Frames actually captured per second, from the frames' own timestamps."""
    if len(frames) < 2:
        return FALLBACK_FPS
    span = (frame_second(frames[-1]) - frame_second(frames[0])) % 86400 + 1
    return min(max(len(frames) / span, 1), 100)


def encode_video(folder, frames, output, codec):
    """Encode `frames` (names in `folder`, in time order) into an H.264 MP4 at `output`
    that lasts as long as the event did. Raises RuntimeError with ffmpeg's reason."""
    if not shutil.which("ffmpeg"):
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    rate = frames_per_second(frames)
    seconds = len(frames) / rate
    if seconds > TIMELAPSE_AFTER:
        rate *= TIMELAPSE
    partial = output + ".part"
    if os.path.exists(partial):  # left by a crash; its ffmpeg may still write to it
        os.remove(partial)
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "image2pipe", "-c:v", "mjpeg", "-framerate", f"{rate:.4f}", "-i", "pipe:0",
               "-vf", "scale='trunc(min(1280,iw)/2)*2':-2,format=yuv420p",
               *(["-r", "30"] if rate > 30 else []), "-c:v", *codec,
               "-movflags", "+faststart", "-f", "mp4", partial]
    with tempfile.TemporaryFile() as errors:
        ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=errors)
        try:
            for name in frames:
                with open(os.path.join(folder, name), "rb") as frame:
                    ffmpeg.stdin.write(frame.read())
            ffmpeg.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            status = ffmpeg.wait()
        errors.seek(0)
        reason = errors.read()[-500:].decode(errors="replace").strip()
    made = os.path.exists(partial) and os.path.getsize(partial) > 0
    if status or not made:
        if os.path.exists(partial):
            os.remove(partial)
        raise RuntimeError(f"ffmpeg failed ({status}): {reason or 'no video written'}")
    os.replace(partial, output)


def pick_thumbnail_frame(folder, frames):
    """The frame with the most changed pixels, from motion's EXIF ImageDescription
    (picture_exif %D-...); without it, the frame a quarter of the way in."""
    best, most = frames[len(frames) // 4], -1
    for name in frames:
        try:
            with Image.open(os.path.join(folder, name)) as image:
                description = image.getexif().get(270)
            changed = int(str(description).split("-", 1)[0])
        except (OSError, ValueError, SyntaxError):
            continue
        if changed > most:
            best, most = name, changed
    return best


def make_thumbnail(folder, frames, output):
    """thumbnail.jpg, at most 640x480, from the most telling frame that Pillow can read."""
    first = pick_thumbnail_frame(folder, frames)
    for name in [first] + [name for name in frames if name != first]:
        try:
            with Image.open(os.path.join(folder, name)) as image:
                image.thumbnail((640, 480))
                data = io.BytesIO()
                image.convert("RGB").save(data, "JPEG", quality=80)
        except (OSError, ValueError, SyntaxError):
            continue
        write_atomically(output, data.getvalue())
        return True
    return False


def _gather_midnight_frames(base, camera, date, number, event_dir):
    """An event that crossed midnight left its first frames in the previous day's folder
    of the same number: move them in (frames are never left behind)."""
    previous = date_of(midnight(date) - 86400)
    previous_dir = os.path.join(base, camera, previous, number)
    if not os.path.isdir(previous_dir) or os.path.islink(previous_dir):
        return
    earlier = frame_names(previous_dir) or frame_names(previous_dir, debug=True)
    later = frame_names(event_dir) or frame_names(event_dir, debug=True)
    if not earlier or not later or frame_second(earlier[-1]) < 86400 - MIDNIGHT_MARGIN \
            or frame_second(later[0]) >= MIDNIGHT_MARGIN:
        return
    for name in os.listdir(previous_dir):
        if FRAME_RE.match(name) and not os.path.exists(os.path.join(event_dir, name)):
            os.rename(os.path.join(previous_dir, name), os.path.join(event_dir, name))
    try:
        os.rmdir(previous_dir)
    except OSError:
        pass


def process_event(base, camera, date, number, codec):
    """Turn motion's BASE/camera/date/number/ into a processed event folder.
    Returns (date, name, problems): where the event now is, and what failed."""
    event_dir = os.path.join(base, camera, date, number)
    _gather_midnight_frames(base, camera, date, number, event_dir)
    debug_dir = os.path.join(event_dir, "debug")
    debug_frames = frame_names(event_dir, debug=True)
    if debug_frames:
        os.makedirs(debug_dir, exist_ok=True)
        for name in debug_frames:
            os.replace(os.path.join(event_dir, name), os.path.join(debug_dir, name))
    frames = in_time_order(frame_names(event_dir))
    debug_frames = in_time_order(frame_names(debug_dir, debug=True)) \
        if os.path.isdir(debug_dir) else []
    timeline = frames or debug_frames
    if not timeline:
        raise RuntimeError("no frames in the event folder")
    problems = []
    for folder, names, what in ((event_dir, frames, "video"), (debug_dir, debug_frames, "debug")):
        output = os.path.join(folder, "video.m4v")
        if names and not os.path.exists(output):
            try:
                encode_video(folder, names, output, codec)
            except (RuntimeError, OSError) as error:
                problems.append(f"{what}: {error}")
    thumbnail = os.path.join(event_dir, "thumbnail.jpg")
    if not os.path.exists(thumbnail) and not make_thumbnail(
            event_dir if frames else debug_dir, timeline, thumbnail):
        problems.append("thumbnail: no frame could be read")
    start = timeline[0][:8]
    if frame_second(timeline[0]) > frame_second(timeline[-1]):  # crossed midnight
        date = date_of(midnight(date) - 86400)
    day_dir = os.path.join(base, camera, date)
    os.makedirs(day_dir, exist_ok=True)
    for sequence in range(MAX_SEQUENCE + 1):
        name = f"{start}.{sequence}" if sequence > 1 else start
        if sequence == 1 or os.path.lexists(os.path.join(day_dir, name)):
            continue
        try:
            os.rename(event_dir, os.path.join(day_dir, name))
            return date, name, problems
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise RuntimeError(f"more than {MAX_SEQUENCE} events started at {date} {start}")


class Processor:
    """Watches BASE/queue in a background thread and processes each entry in a pool of
    `jobs` threads (ffmpeg runs as a subprocess, so threads are enough)."""

    def __init__(self, config, motion, cache):
        self.base, self.cameras, self.cache = motion.base, motion.camera_ids, cache
        self.codec = config.video_codec
        self.pool = concurrent.futures.ThreadPoolExecutor(config.jobs, "process")
        self.lock = threading.Lock()
        self.running = set()
        self.failed = collections.deque(maxlen=20)
        self.stopping = threading.Event()

    def start(self):
        threading.Thread(target=self.run, name="queue", daemon=True).start()

    def run(self):  # pragma: no cover - the loop around poll(), run by the server
        self.cache.ready.wait()
        last_sweep = 0
        while not self.stopping.is_set():
            try:
                self.poll()
                if time.monotonic() - last_sweep > 60:
                    self.cache.refresh()
                    self.requeue()
                    last_sweep = time.monotonic()
            except OSError as error:  # the media folder unreadable: say so, try again
                log.error("queue watcher failed, retrying", error=str(error))
            self.stopping.wait(1)

    def poll(self):
        """Start processing each new queue entry in the pool, and remove refused ones.
        An entry is removed once its event is processed, so a crash half way leaves it
        for the next start. Returns the futures of the events started."""
        futures = []
        queue_dir = os.path.join(self.base, QUEUE_DIR)
        os.makedirs(queue_dir, exist_ok=True)  # motion's touch needs it: bring it back
        for entry in sorted(os.listdir(queue_dir)):
            match = QUEUE_RE.match(entry)
            with self.lock:
                if match and match.groups() in self.running:
                    continue
            event = self.check_entry(entry)
            future = self.submit(*event, entry=entry) if event else self.remove_entry(entry)
            if future:
                futures.append(future)
        return futures

    def remove_entry(self, entry):
        path = os.path.join(self.base, QUEUE_DIR, entry)
        try:
            os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) \
                else os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("queue entry could not be removed", entry=entry, error=str(error))

    def check_entry(self, entry):
        """(camera, date, number) for a queue entry naming a real unprocessed event folder,
        else None, with a log line saying why it was refused."""
        match = QUEUE_RE.match(entry)
        reason = None
        if not match:
            reason = "not of the form Camera<N>_<YYYY-MM-DD>_<number>"
        elif match.group(1) not in self.cameras:
            reason = "no such camera in motion's configuration"
        else:
            camera, date, number = match.groups()
            try:
                midnight(date)
            except ValueError:
                reason = "not a real date"
            else:
                if not _safe_dir(os.path.join(self.base, camera, date, number),
                                 self.cache.real_base):
                    reason = "no such event folder inside BASE"
        if reason:
            log.warning("queue entry refused", entry=entry, reason=reason)
            return None
        return match.groups()

    def entries(self):
        """The queue's entries and their ages in seconds."""
        queue_dir, now, ages = os.path.join(self.base, QUEUE_DIR), time.time(), {}
        for entry in os.listdir(queue_dir) if os.path.isdir(queue_dir) else ():
            try:
                ages[entry] = now - os.lstat(os.path.join(queue_dir, entry)).st_mtime
            except OSError:
                continue
        return ages

    def oldest_entry_age(self):
        return max(self.entries().values(), default=None)

    def state(self):
        """The queue for the status page: entries waiting, events running, recent failures."""
        with self.lock:
            running = sorted(f"{camera}_{date}_{number}" for camera, date, number
                             in self.running)
        return {"waiting": sorted(set(self.entries()) - set(running)), "running": running,
                "failed": [dict(failure, time=format_time(failure["time"]))
                           for failure in self.failed]}

    def submit(self, camera, date, number, entry=None):
        """Process an event in the pool, unless it is being processed already."""
        with self.lock:
            if (camera, date, number) in self.running:
                return None
            self.running.add((camera, date, number))
        return self.pool.submit(self.process, camera, date, number, entry)

    def requeue(self):
        """Process numbered folders left without a queue entry (a crash or restart half way),
        except those motion may still be writing."""
        for camera, date, number in self.cache.pending():
            folder = os.path.join(self.base, camera, date, number)
            try:
                last_written = os.stat(folder).st_mtime  # a new frame changes the folder's mtime
            except OSError:
                continue
            if time.time() - last_written > BUSY_SECONDS \
                    and _safe_dir(folder, self.cache.real_base):
                log.info("unprocessed event folder queued again", camera=camera, date=date,
                         number=number)
                self.submit(camera, date, number)

    def process(self, camera, date, number, entry=None):
        """Process one event, store it in the cache and remove its queue entry; failures
        are logged, never raised."""
        started = time.monotonic()
        try:
            event_date, name, problems = process_event(self.base, camera, date, number,
                                                       self.codec)
            self.cache.set(camera, event_date, name, numbered_in=date)
            seconds = round(time.monotonic() - started, 2)
            if problems:
                log.warning("event processed without some of its parts", camera=camera,
                            folder=f"{event_date}/{name}", problems=problems)
                self.failed.append({"camera": camera, "event": f"{event_date}/{name}",
                                    "reason": "; ".join(problems), "time": local_now()})
            frames = len(frame_names(os.path.join(self.base, camera, event_date, name)))
            log.info("event processed", camera=camera, folder=f"{event_date}/{name}",
                     number=number, frames=frames, seconds=seconds)
        except Exception as error:
            log.error("event processing failed, its frames are kept", camera=camera, date=date,
                      number=number, error=str(error))
            self.failed.append({"camera": camera, "event": f"{date}/{number}",
                                "reason": str(error), "time": local_now()})
        finally:
            if entry:
                self.remove_entry(entry)
            with self.lock:
                self.running.discard((camera, date, number))


# Status ######################################################################

#: A queue entry older than this many seconds means processing is stuck.
STUCK_SECONDS = 600
#: How often the cameras' stream ports are tried, and how long each try may take.
STREAM_CHECK_SECONDS, STREAM_TIMEOUT = 60, 1


class StreamWatch:
    """Tries each camera's stream port on this box once a minute, in a background thread,
    so the status page tells which live views answer without a request waiting on it."""

    def __init__(self, cameras):
        self.cameras, self.answers = cameras, {}

    def start(self):
        threading.Thread(target=self.run, name="streams", daemon=True).start()

    def run(self):  # pragma: no cover - the loop around check(), run by the server
        while True:
            self.check()
            time.sleep(STREAM_CHECK_SECONDS)

    def check(self):
        for camera in self.cameras:
            try:
                socket.create_connection(("127.0.0.1", camera.stream_port),
                                         STREAM_TIMEOUT).close()
                answers = True
            except OSError:
                answers = False
            self.answers[camera.id] = {"answers": answers, "checked": format_time(local_now())}


def health(cache, processor):
    """Why strix is not well, as sentences; empty when it is."""
    reasons = []
    oldest = processor.oldest_entry_age()
    if oldest is not None and oldest > STUCK_SECONDS:
        reasons.append(f"processing is stuck: a queue entry waits for {oldest // 60:.0f}"
                       " minutes")
    if not os.access(cache.base, os.W_OK | os.X_OK):
        reasons.append(f"strix cannot write to the media folder {cache.base}")
    if not os.path.isdir(os.path.join(cache.base, QUEUE_DIR)):
        reasons.append(f"the queue folder {os.path.join(cache.base, QUEUE_DIR)} is missing:"
                       " motion cannot report events")
    if cache.space_warning:
        reasons.append(cache.space_warning)
    return reasons


def status(motion, cache, processor, streams, started):
    """Everything the status page shows, as JSON values."""
    disk = os.statvfs(cache.base)
    size, free = disk.f_blocks * disk.f_frsize, disk.f_bavail * disk.f_frsize
    now = local_now()
    cameras = []
    for camera in motion.cameras:
        oldest, newest = cache.ends(camera.id)
        cameras.append({"id": camera.id, "name": camera.name, "events": cache.count(camera.id),
                        "bytes": cache.media_bytes(camera.id),
                        "oldest": oldest and format_time(oldest.start),
                        "newest": newest and format_time(newest.start),
                        "last_hour": cache.count_since(camera.id, now - 3600),
                        "last_day": cache.count_since(camera.id, now - 86400),
                        "stream_port": camera.stream_port,
                        "stream": streams.answers.get(camera.id)})
    reasons = health(cache, processor)
    return {"version": __version__, "uptime_seconds": round(time.monotonic() - started),
            "base": cache.base, "disk": {"total": size, "used": size - disk.f_bfree
                                         * disk.f_frsize, "free": free},
            "min_free_percent": cache.min_free_percent, "max_media_bytes":
            cache.max_media_bytes, "media_bytes": cache.media_bytes(), "cameras": cameras,
            "queue": processor.state(), "last_expiry": cache.last_expiry,
            "health": {"ok": not reasons, "reasons": reasons},
            "problems": list(reversed(RECENT_PROBLEMS))}


# Login #######################################################################

#: scrypt's work factor: 16 MiB of memory and some 50 ms here (more on a Pi) per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: More failed logins than MAX_FAILURES within LOGIN_WINDOW seconds from one address are
#: answered 429 for LOGIN_WINDOW seconds.
MAX_FAILURES, LOGIN_WINDOW = 10, 60


def _scrypt(password, salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P):
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 2**20,
                          dklen=32)


def hash_password(password):
    """A salted scrypt hash of `password`, as strix.cfg's password_hash holds it."""
    salt = os.urandom(16)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${_scrypt(password, salt).hex()}"


def password_matches(password, password_hash):
    n, r, p, salt, digest = PASSWORD_HASH_RE.match(password_hash).groups()
    try:
        mine = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except (ValueError, MemoryError):  # parameters scrypt refuses
        return False
    return hmac.compare_digest(mine.hex(), digest)


def _raw_header(name):
    """A request header as the client sent it (bytes as latin-1); Bottle's get_header
    raises on bytes that are not UTF-8, which would make a hostile header a 500."""
    return bottle.request.environ.get("HTTP_" + name.upper().replace("-", "_"), "")


class Login:
    """Bottle plugin: HTTP Basic login on every route (Basic works for <img>, <video> and
    range requests). A password that passed is remembered by a keyed hash of the header, so
    scrypt runs once per browser, not once per thumbnail. Failures are logged with the
    client's address (for fail2ban), and an address that fails too often gets 429."""

    def __init__(self, user, password_hash):
        self.user, self.password_hash = user, password_hash
        self.secret, self.lock = os.urandom(32), threading.Lock()
        self.accepted = set()
        self.failures = collections.defaultdict(collections.deque)  # address: times
        self.blocked = {}  # address: monotonic time until which it gets 429

    def __call__(self, callback):
        def wrapper(*args, **kwargs):
            self.check()
            return callback(*args, **kwargs)
        return wrapper

    def check(self):
        """Return when the request carries the login, else raise 401 (or 429)."""
        address = bottle.request.environ.get("REMOTE_ADDR", "-")  # not X-Forwarded-For
        now = time.monotonic()
        with self.lock:
            if self.blocked.get(address, 0) > now:
                raise bottle.HTTPError(429, "too many failed logins: try again in a minute",
                                       **{"Retry-After": str(LOGIN_WINDOW)})
        header = _raw_header("Authorization")
        key = hmac.new(self.secret, header.encode("latin-1", "replace"), "sha256").digest()
        if key in self.accepted:
            return
        user, password = bottle.parse_auth(header) or (None, None)
        if user is not None and hmac.compare_digest(user.encode(), self.user.encode()) \
                & password_matches(password, self.password_hash):
            with self.lock:
                if len(self.accepted) > 1000:
                    self.accepted.clear()
                self.accepted.add(key)
            return
        if header:
            self.failed(address, user, now)
        raise bottle.HTTPError(401, "log in to see the cameras",
                               **{"WWW-Authenticate": 'Basic realm="strix", charset="UTF-8"'})

    def failed(self, address, user, now):
        with self.lock:
            times = self.failures[address]
            times.append(now)
            while times and times[0] < now - LOGIN_WINDOW:
                times.popleft()
            if len(times) > MAX_FAILURES:
                self.blocked[address] = now + LOGIN_WINDOW
                times.clear()
            for other in [other for other, left in self.failures.items() if not left]:
                del self.failures[other]
        log.warning("login failed", client=address, user=user,
                    blocked=address in self.blocked and self.blocked[address] > now)


# Web #########################################################################
# Pages are rendered on the server from views/*.tpl; static/strix.js only adds what
# plain links and forms cannot (a failed live view, paging in place, the slideshow).
# Changes are POST (or DELETE) requests, refused unless they carry the session's token
# and come from strix's own host.

#: Files under a camera folder that /motion/ serves, with their content types.
MEDIA_TYPES = {".jpg": "image/jpeg", ".m4v": "video/mp4"}
#: Events per camera on the home page, and per page of a camera's history.
STRIP_EVENTS, PAGE_EVENTS = 5, 100
#: At most this many frames are shown in an event page's grid (every Nth frame beyond).
FRAME_TILES = 120
#: Days in a camera page's activity chart.
CHART_DAYS = 7
#: Seconds between two refreshes of the home page's newest events.
REFRESH_SECONDS = 30
#: A rendered page is reused for at most PAGE_SECONDS while the events do not change;
#: at most PAGE_CACHE_SIZE of them are kept.
PAGE_SECONDS, PAGE_CACHE_SIZE = 10, 64
#: The cookie holding a browser's session id, and the header scripts send its token in.
SESSION_COOKIE, TOKEN_HEADER = "strix_session", "X-Strix-Token"


def _query_text(name):
    """A query value as text (the last one when repeated), None when absent or empty."""
    if not bottle.request.query.get(name):
        return None
    text = bottle.request.query.getunicode(name)
    if text is None:
        raise bottle.HTTPError(400, f"{name} is not valid UTF-8")
    return text.strip()


def _query_time(name, default):
    """A time as YYYY-MM-DD HH:MM:SS; also as a datetime-local field sends it
    (YYYY-MM-DDTHH:MM, seconds optional), as the camera page's filter does."""
    text = _query_text(name)
    if text is None:
        return default
    try:
        full = re.sub(r"\A(\S{10})T(\d\d:\d\d)(:\d\d)?\Z",
                      lambda match: f"{match[1]} {match[2]}{match[3] or ':00'}", text)
        return parse_time(full)
    except ValueError:
        raise bottle.HTTPError(400, f"{name} must be YYYY-MM-DD HH:MM:SS, not {text!r}") from None


def _query_count(name, default):
    text = _query_text(name)
    if text is None:
        return default
    if not re.match(r"\d{1,9}\Z", text):
        raise bottle.HTTPError(400, f"{name} must be a whole number from 0, not {text!r}")
    return int(text)


def media_path(base, path):
    """The real path of a /motion/ URL path if it lies inside a camera folder, else None."""
    parts = path.split("/")
    if not CAMERA_RE.match(parts[0]) or any(part in (".", "..") or "\0" in part
                                            for part in parts):
        return None
    real_base = os.path.realpath(base)
    wanted = os.path.normpath(os.path.join(real_base, *parts))
    real = os.path.realpath(wanted)
    return real if real == wanted and real.startswith(real_base + os.sep) else None


def log_requests(callback):
    """Bottle plugin: one debug log line per request, with its status and duration."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return callback(*args, **kwargs)
        finally:
            log.debug("request", method=bottle.request.method, path=bottle.request.path,
                      status=bottle.response.status_code,
                      ms=round((time.perf_counter() - started) * 1000, 2))
    return wrapper


def _same_host(netloc):
    """A host[:port] as browsers compare origins: lower case, without a default port."""
    return re.sub(r":(80|443)\Z", "", netloc.lower())


class Sessions:
    """Tokens against cross-site requests. Each browser gets a random session id in an
    HttpOnly cookie; its token, an HMAC of the id under a secret made at start, is in every
    form (scripts send it as the X-Strix-Token header). A change must carry the token of
    its own cookie and, when the browser says where it comes from, come from strix's host."""

    def __init__(self):
        self.secret = os.urandom(32)

    def _token(self, session):
        return hmac.new(self.secret, session.encode(), "sha256").hexdigest()[:32]

    def token(self):
        """This browser's token; starts its session (sets the cookie) when it has none."""
        session = bottle.request.get_cookie(SESSION_COOKIE, "")
        if not re.match(r"[0-9a-f]{32}\Z", session):
            session = os.urandom(16).hex()
            bottle.response.set_cookie(SESSION_COOKIE, session, path="/", httponly=True,
                                       samesite="strict")
        return self._token(session)

    def check(self):
        """Refuse (403) a request from another site or without its session's token."""
        request = bottle.request
        source = _raw_header("Origin") or _raw_header("Referer") or None
        if source is not None and _same_host(urllib.parse.urlsplit(source).netloc) \
                != _same_host(request.urlparts.netloc):
            raise bottle.HTTPError(403, "refused: the request comes from another site")
        session = request.get_cookie(SESSION_COOKIE, "")
        sent = _raw_header(TOKEN_HEADER) or request.forms.get("token") or ""
        if not session or not hmac.compare_digest(sent, self._token(session)):
            raise bottle.HTTPError(403, "refused: the page was too old to make changes;"
                                        " reload it and try again")


def human_size(size):
    """Bytes as people read them: 512 B, 3.4 MB, 12.0 GB."""
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def event_page_url(event):
    return f"/event/{event.camera}/{event.date}/{event.name}"


def clock(seconds):
    """The time of day of wall-clock `seconds`, HH:MM:SS."""
    return format_time(seconds)[11:]


def short_time(seconds):
    """When an event was, briefly: '14:33' today, 'Fri 14:33' this week, 'Nov 21 14:33'."""
    days_ago = local_now() // 86400 - seconds // 86400
    title = event_title(seconds)
    day = "" if days_ago == 0 else title[:4] if 0 < days_ago < 7 else title[4:11]
    return day + clock(seconds)[:5]


def duration(seconds):
    """A length of time as people say it: 45 s, 2 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def day_title(date):
    """'Sat Nov 28, 2026' for '2026-11-28'."""
    title = event_title(midnight(date))
    return f"{title[:10]}, {date[:4]}"


def deleted_title(text):
    """The title of the event that ?deleted=DATE/NAME names, for the note after a delete."""
    match = re.match(r"(\d{4}-\d\d-\d\d)/(.+)\Z", text or "")
    key = event_key(match[2]) if match else None
    try:
        return event_title(midnight(match[1]) + (key >> 8)) if key is not None else None
    except ValueError:
        return None


def make_app(config, motion, cache, processor=None, streams=None):
    """The Bottle app serving the pages, the JSON API and the media of one media folder;
    `processor` and `streams` (the queue watcher and the stream checker) feed the status."""
    started = time.monotonic()
    processor = processor or Processor(config, motion, cache)
    streams = streams or StreamWatch(motion.cameras)
    app = bottle.Bottle()
    if config.user:
        app.install(Login(config.user, config.password_hash))
    if config.log_level == "debug":
        app.install(log_requests)
    sessions = Sessions()
    templates = [os.path.join(ROOT, "views")]
    base = motion.base

    @app.install
    def guard_changes(callback):
        """Every request but GET and HEAD is a change: check it against cross-site use."""
        def wrapper(*args, **kwargs):
            if bottle.request.method not in ("GET", "HEAD"):
                sessions.check()
            return callback(*args, **kwargs)
        return wrapper

    def stream_url(camera):
        """Where the browser gets a camera's live view: straight from motion (strix never
        relays an endless stream), at the host the browser reached strix by."""
        host = bottle.request.urlparts.hostname or "localhost"
        return config.stream_url.format(host=f"[{host}]" if ":" in host else host,
                                        port=camera.stream_port, id=camera.id,
                                        camera_id=camera.id[len("Camera"):])

    @app.hook("after_request")
    def security_headers():
        """Every response may load nothing but strix's own files and the cameras' live
        views, is never framed by another site, and is never sniffed as another type."""
        streams = {urllib.parse.urlsplit(stream_url(camera)) for camera in motion.cameras}
        sources = " ".join(sorted({f"{url.scheme}://{url.netloc}" if url.scheme else url.netloc
                                   for url in streams if url.netloc}))
        headers = bottle.response.headers
        headers["Content-Security-Policy"] = (
            f"default-src 'self'; img-src 'self' {'*' if '[' in sources else sources};"
            " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "same-origin"
        headers["X-Frame-Options"] = "DENY"

    def render(name, **values):
        """A page (or a fragment of one) from views/."""
        return bottle.template(name, template_lookup=templates, version=__version__,
                               cameras=motion.cameras, event_page_url=event_page_url,
                               clock=clock, short_time=short_time, duration=duration,
                               day_title=day_title, event_title=event_title,
                               HAS_VIDEO=HAS_VIDEO, HAS_THUMBNAIL=HAS_THUMBNAIL,
                               healthy=not health(cache, processor), **values)

    def known_camera(camera_id):
        camera = motion.camera_ids.get(camera_id)
        if camera is None:
            raise bottle.HTTPError(404, f"no such camera: {camera_id}")
        return camera

    def known_event(camera_id, date, name):
        event = cache.get(camera_id, date, name)
        if event is None:
            raise bottle.HTTPError(404, f"no such event: {camera_id}/{date}/{name}")
        return event

    @app.error(400)
    @app.error(401)
    @app.error(403)
    @app.error(404)
    @app.error(405)
    @app.error(413)
    @app.error(429)
    @app.error(500)
    def error_page(error):
        if error.status_code == 500:
            log.error("request failed", path=bottle.request.path, error=repr(error.exception),
                      traceback=error.traceback)
        if bottle.request.path.startswith("/api/"):
            bottle.response.content_type = "application/json"
            return json.dumps({"error": error.body or error.status_line})
        return render("error", status=error.status_line, message=error.body)

    # The home page: every camera's live view and newest events

    def strip_offsets():
        """How far back each camera's strip of events is paged: ?Camera1=5&Camera2=10."""
        return {camera.id: _query_count(camera.id, 0) for camera in motion.cameras}

    def strip(camera, offsets):
        """The values strip.tpl shows: one camera's events at its offset, newest first."""
        offset, total = offsets[camera.id], cache.count(camera.id)
        events = cache.query(camera.id, 0, local_now(), offset, STRIP_EVENTS)[::-1]

        def page(to):
            wanted = {**offsets, camera.id: to}
            return "/?" + urllib.parse.urlencode({key: value for key, value in wanted.items()
                                                  if value})
        return {"camera": camera, "events": events, "offset": offset, "total": total,
                "newer": page(max(offset - STRIP_EVENTS, 0)) if offset else None,
                "older": page(offset + STRIP_EVENTS) if offset + len(events) < total else None}

    pages = {}  # (path, query, host, cache generation, time bucket): rendered page

    def cached(handler):
        """Keep a page that depends only on its URL, the host and the events until the
        events change or PAGE_SECONDS pass: fifty browsers on a camera page cost one render."""
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            request = bottle.request
            key = (request.path, request.query_string, request.environ.get("HTTP_HOST"),
                   cache.generation, local_now() // PAGE_SECONDS)
            page = pages.get(key)
            if page is None:
                page = handler(*args, **kwargs)
                if len(pages) >= PAGE_CACHE_SIZE:
                    pages.clear()
                pages[key] = page
            return page
        return wrapper

    @app.get("/")
    @cached
    def home():
        offsets = strip_offsets()
        return render("index", strips=[strip(camera, offsets) for camera in motion.cameras],
                      stream_url=stream_url, refresh=REFRESH_SECONDS,
                      reload=None if any(offsets.values()) else REFRESH_SECONDS)

    @app.get("/strip/<camera_id>")
    @cached
    def strip_fragment(camera_id):
        """One camera's strip alone, for strix.js to page and refresh it in place."""
        return render("strip", **strip(known_camera(camera_id), strip_offsets()))

    # A camera's history

    @app.get("/camera/<camera_id>")
    @cached
    def camera_page(camera_id):
        camera = known_camera(camera_id)
        start, end = _query_time("start", 0), _query_time("end", local_now())
        offset = _query_count("offset", 0)
        filters = {name: format_time(value) for name, value in (("start", start), ("end", end))
                   if _query_text(name)}
        found = cache.query(camera.id, start, end, offset, PAGE_EVENTS + 1)
        groups = []  # [(date, [its events, newest first])], newest day first
        for event in reversed(found[-PAGE_EVENTS:]):
            if not groups or groups[-1][0] != event.date:
                groups.append((event.date, []))
            groups[-1][1].append(event)
        today = local_now() // 86400 * 86400
        chart_dates = [date_of(today - back * 86400) for back in range(CHART_DAYS)]

        def page(to):
            return f"/camera/{camera.id}?" + urllib.parse.urlencode({**filters, "offset": to})
        return render("camera", camera=camera, groups=groups, filters=filters,
                      days=cache.day_counts(camera.id), chart_dates=chart_dates,
                      chart=cache.hourly_counts(camera.id, chart_dates),
                      newer=page(max(offset - PAGE_EVENTS, 0)) if offset else None,
                      older=page(offset + PAGE_EVENTS) if len(found) > PAGE_EVENTS else None,
                      deleted=deleted_title(_query_text("deleted")))

    # An event

    @app.get("/event/<camera_id>/<date>/<name>")
    def event_page(camera_id, date, name):
        event = known_event(camera_id, date, name)
        event_dir = media_path(base, f"{camera_id}/{date}/{name}")
        try:
            frames = in_time_order(frame_names(event_dir)) if event_dir else []
        except OSError:  # deleted meanwhile
            frames = []
        has_debug = bool(event_dir) and os.path.isfile(os.path.join(event_dir, "debug",
                                                                    "video.m4v"))
        older, newer = cache.neighbours(event)
        every = -(-len(frames) // FRAME_TILES) or 1
        return render("event", event=event, camera=motion.camera_ids[camera_id],
                      older=older, newer=newer, frames=frames, tiles=frames[::every],
                      every=every, fps=frames_per_second(frames), has_debug=has_debug,
                      debug=has_debug and bool(bottle.request.query.debug),
                      token=sessions.token())

    def change(camera_id, date, name, action):
        """Keep, un-keep or delete an event, in the cache, on disk and so in the API."""
        event = known_event(camera_id, date, name)
        done = cache.delete(camera_id, date, name) if action == "delete" else \
            cache.set_saved(camera_id, date, name, action == "keep")
        if not done:
            raise bottle.HTTPError(404, f"no such event: {camera_id}/{date}/{name}")
        log.info("event changed", action=action, camera=camera_id, folder=f"{date}/{name}")
        return event if action == "delete" else cache.get(camera_id, date, name)

    @app.post("/event/<camera_id>/<date>/<name>/<action:re:keep|unkeep|delete>")
    def change_from_page(camera_id, date, name, action):
        event = change(camera_id, date, name, action)
        if action == "delete":
            bottle.redirect(f"/camera/{camera_id}?deleted={date}/{name}", 303)
        bottle.redirect(event_page_url(event), 303)

    # The JSON API

    def known_cameras(ids):
        return [known_camera(camera_id).id for camera_id in ids.split(",")]

    @app.get("/api/cameras/list")
    def cameras_list():
        return {"cameras": [[camera.id, camera.stream_port] for camera in motion.cameras]}

    @app.get("/api/events/<ids>")
    def events(ids):
        cameras = list(dict.fromkeys(known_cameras(ids)))
        start, end = _query_time("start", 0), _query_time("end", local_now())
        offset, limit = _query_count("offset", 0), _query_count("limit", 10)
        bottle.response.content_type = "application/json"
        head = json.dumps({"start": format_time(start), "end": format_time(end),
                           "offset": offset, "limit": limit})[:-1] + ', "events": {'
        chunks = [head]  # sent as they are: a long list is never joined into one string
        for number, camera in enumerate(cameras):
            chunks.append(f'{", " if number else ""}{json.dumps(camera)}: [')
            days = cache.query_json(camera, start, end, offset, limit)
            chunks += [f", {day}" if index else day for index, day in enumerate(days)]
            chunks.append("]")
        chunks.append("}}")
        return [chunk.encode() for chunk in chunks]

    @app.get("/api/token")
    def api_token():
        """The token a script sends (as X-Strix-Token, with the cookie) to make changes."""
        return {"token": sessions.token(), "header": TOKEN_HEADER}

    @app.post("/api/event/<camera_id>/<date>/<name>/<action:re:keep|unkeep>")
    def change_from_api(camera_id, date, name, action):
        return change(camera_id, date, name, action).json()

    @app.delete("/api/event/<camera_id>/<date>/<name>")
    def delete_from_api(camera_id, date, name):
        return {"deleted": change(camera_id, date, name, "delete").json()}

    # Status

    @app.get("/status")
    def status_page():
        return render("status", status=status(motion, cache, processor, streams, started),
                      size=human_size)

    @app.get("/api/status")
    def status_api():
        return status(motion, cache, processor, streams, started)

    @app.get("/api/health")
    def health_api():
        """200 {"ok": true} while strix serves and processes; 503 with the reasons if not."""
        reasons = health(cache, processor)
        bottle.response.status = 503 if reasons else 200
        return {"ok": not reasons, **({"reasons": reasons} if reasons else {})}

    # Files

    @app.get("/motion/<path:path>")
    def media(path):
        real = media_path(base, path)
        if real is None:
            raise bottle.HTTPError(404, "no such file")
        parts = path.strip("/").split("/")
        if os.path.isdir(real) and len(parts) == 3 and parts[0] in motion.camera_ids:
            event = cache.get(*parts)
            if event is not None:
                return render("frames", event=event, frames=frame_names(real))
        kind = MEDIA_TYPES.get(os.path.splitext(real)[1])
        if kind is None or not os.path.isfile(real):
            raise bottle.HTTPError(404, "no such file")
        download = "_".join(parts) if bottle.request.query.download else False
        return bottle.static_file(os.path.relpath(real, os.path.realpath(base)),
                                  root=os.path.realpath(base), mimetype=kind,
                                  download=download)

    @app.get("/static/<path:path>")
    def static(path):
        return bottle.static_file(path, root=os.path.join(ROOT, "static"))

    return app


# Logging #####################################################################

#: The latest warnings and errors, for the status page.
RECENT_PROBLEMS = collections.deque(maxlen=20)


def remember_problems(logger, method, event):
    """structlog processor: keep warnings and errors for the status page."""
    if method in ("warning", "error", "critical"):
        RECENT_PROBLEMS.append(dict(event))
    return event


def setup_logging(config):
    """structlog JSON lines on stderr (journald keeps them) or in a rotated file."""
    level = getattr(logging, config.log_level.upper())
    handler = (logging.StreamHandler(sys.stderr) if config.log == "-" else
               logging.handlers.RotatingFileHandler(
                   config.log, maxBytes=int(config.log_max_mb * 2**20),
                   backupCount=config.log_backups))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("strix")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.format_exc_info, remember_problems,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory())


# Demo ########################################################################

#: The demo's cameras: name and the colour of the visitor that walks past.
DEMO_CAMERAS = (("Front door", (230, 80, 60)), ("Garden", (60, 160, 230)),
                ("Garage", (240, 200, 40)))
#: When the demo's events happen each day (hour, minute, second).
DEMO_TIMES = ((7, 12, 5), (12, 40, 33), (18, 5, 10), (22, 30, 0))
#: Frames per demo event, taken DEMO_FPS a second.
DEMO_FRAMES, DEMO_FPS = 16, 4


def draw_demo_frame(scene, colour, step, moment):
    """One 640x360 frame: a still scene with a visitor `step` frames in, and the time."""
    image = scene.copy()
    draw = ImageDraw.Draw(image)
    x = 40 + step * 34
    draw.rectangle((x, 170, x + 50, 290), fill=colour)
    draw.ellipse((x + 8, 130, x + 42, 164), fill=colour)
    draw.text((12, 10), time.strftime(TIME_FORMAT, time.gmtime(moment)), fill=(255, 255, 255))
    return image, (x, 130, x + 50, 290)


def _demo_scene(number):
    scene = Image.new("RGB", (640, 360), (40, 60, 90))
    draw = ImageDraw.Draw(scene)
    draw.rectangle((0, 290, 640, 360), fill=(50, 90, 50))
    draw.rectangle((380 - number * 60, 150, 600 - number * 60, 290), fill=(120, 110, 100))
    draw.polygon(((370 - number * 60, 150), (490 - number * 60, 80),
                  (610 - number * 60, 150)), fill=(140, 60, 50))
    return scene


def write_demo_event(event_dir, scene, colour, start):
    """Frames (and debug frames) as motion writes them for one event starting at `start`."""
    os.makedirs(event_dir, exist_ok=True)
    for step in range(DEMO_FRAMES):
        moment = start + step // DEMO_FPS
        image, box = draw_demo_frame(scene, colour, step, moment)
        name = time.strftime("%H-%M-%S", time.gmtime(moment)) + f"-{step % DEMO_FPS:02d}"
        exif = Image.Exif()
        changed = (box[2] - box[0]) * (box[3] - box[1]) - abs(step - DEMO_FRAMES // 2) * 100
        exif[270] = f"{changed}-4-50-160-{box[0] + 25}-{box[1] + 80}"
        image.save(os.path.join(event_dir, f"{name}.jpg"), quality=80, exif=exif)
        mask = Image.new("L", image.size)
        ImageDraw.Draw(mask).rectangle(box, fill=255)
        mask.save(os.path.join(event_dir, f"{name}m.jpg"), quality=80)


def make_demo(folder, days=3):
    """Create (once) a demo media folder with a matching motion.conf and strix.cfg, its
    events left unprocessed with their queue entries, so strix processes them at start.
    Returns the path of the demo's strix.cfg."""
    folder = os.path.abspath(folder)
    config_path = os.path.join(folder, "strix.cfg")
    if os.path.exists(config_path):
        return config_path
    base = os.path.join(folder, "media")
    os.makedirs(os.path.join(base, QUEUE_DIR), exist_ok=True)
    lines = ["# motion.conf for strix's demo: the lines strix needs, see README.md",
             "picture_output on", "picture_output_motion on",
             "picture_exif %D-%N-%i-%J-%K-%L", f"picture_filename {PICTURE_FILENAME}",
             f"on_event_end touch {base}/{QUEUE_DIR}/Camera%t_%Y-%m-%d_%v", "movie_output off"]
    today = local_now() // 86400 * 86400
    for number, (name, colour) in enumerate(DEMO_CAMERAS, 1):
        camera_conf = os.path.join(folder, f"camera{number}.conf")
        with open(camera_conf, "w") as file:
            file.write(f"camera_id {number}\ncamera_name {name}\ntarget_dir {base}/Camera{number}"
                       f"\nstream_port {8080 + number}\n")
        lines.append(f"camera camera{number}.conf")
        scene = _demo_scene(number)
        for day in range(days - 1, -1, -1):
            date = date_of(today - day * 86400)
            for event, (hour, minute, second) in enumerate(DEMO_TIMES, 1):
                start = today - day * 86400 + hour * 3600 + (minute + number) * 60 + second
                if start > local_now() - 60:
                    continue
                write_demo_event(os.path.join(base, f"Camera{number}", date, f"{event:02d}"),
                                 scene, colour, start)
                open(os.path.join(base, QUEUE_DIR, f"Camera{number}_{date}_{event:02d}"),
                     "w").close()
    with open(os.path.join(folder, "motion.conf"), "w") as file:
        file.write("\n".join(lines) + "\n")
    with open(config_path, "w") as file:
        file.write("# strix.cfg for the demo; see strix.cfg in strix's source for every option"
                   "\n[strix]\nmotion_config = motion.conf\nhost = 127.0.0.1\nport = 8000\n")
    return config_path


# Command line ################################################################

def check(config, motion):
    """Every problem with strix.cfg's and motion's settings together, as lines to print."""
    problems = list(motion.problems)
    if motion.base and not os.path.isdir(motion.base):
        problems.append(f"{motion.path}: the media folder {motion.base} does not exist: "
                        f"create it (mkdir -p {motion.base}) and let motion write to it")
    elif motion.base and not os.access(motion.base, os.W_OK | os.X_OK):
        problems.append(f"{motion.base}: strix cannot write to the media folder: add its user"
                        " to the motion group (usermod -aG motion strix) or fix the rights")
    return problems


def read_new_password():
    """A password typed twice without echo, or the first line of stdin when not a TTY;
    None when the two typed differ."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass
    password = getpass.getpass("Password: ")
    return password if getpass.getpass("Again: ") == password else None


#: A response up to this size is buffered in memory by waitress, not in a temporary file
#: (the API's limit=0 answer for 25,000 events is 9 MB).
OUTBUF_BYTES = 16 * 2**20


def serve(config, motion):  # pragma: no cover - runs the server until stopped
    """Preload the cache, start processing and serve until stopped."""
    import waitress
    cache = EventCache(motion.base, motion.camera_ids, config.keep_days, config.check_minutes,
                       config.min_free_percent, config.max_media_gb)
    processor, streams = Processor(config, motion, cache), StreamWatch(motion.cameras)

    def load():
        cache.preload()
        cache.measure_sizes()
        gc.freeze()  # the cache lives for good: spare it the full garbage collections
    threading.Thread(target=load, name="preload", daemon=True).start()
    processor.start()
    streams.start()
    log.info("strix started", version=__version__, config=config.path, base=motion.base,
             cameras=[camera.id for camera in motion.cameras], url=f"http://{config.host}:"
             f"{config.port}/")
    waitress.serve(make_app(config, motion, cache, processor, streams), host=config.host,
                   port=config.port, threads=config.threads, ident="strix", _quiet=True,
                   connection_limit=config.connection_limit,
                   channel_timeout=config.channel_timeout, outbuf_overflow=OUTBUF_BYTES)


def main(argv=None):  # pragma: no cover - the shell around read_config, check and serve
    parser = argparse.ArgumentParser(prog="strix", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", metavar="PATH",
                        help="strix.cfg to use (default: ./strix.cfg, then /etc/strix/strix.cfg)")
    parser.add_argument("--check", action="store_true",
                        help="check strix.cfg and motion's configuration, print every problem")
    parser.add_argument("--demo", nargs="?", const="strix-demo", metavar="DIR",
                        help="create a demo media folder in DIR (default ./strix-demo) and serve it")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password and print the password_hash line for [auth]")
    parser.add_argument("--version", action="version", version=f"strix {__version__}")
    args = parser.parse_args(argv)
    if args.hash_password:
        password = read_new_password()
        if not password:
            print("the two passwords differ" if password is None else
                  "an empty password is refused", file=sys.stderr)
            return 2
        print(f"password_hash = {hash_password(password)}")
        return 0
    if args.demo:
        if not shutil.which("ffmpeg"):
            print("ffmpeg is not installed: the demo shows frames without videos"
                  " (apt-get install ffmpeg)", file=sys.stderr)
        path = make_demo(args.demo)
    else:
        path = find_config(args.config)
    try:
        config = read_config(path)
    except ConfigError as error:
        print(error, file=sys.stdout if args.check else sys.stderr)
        return 1 if args.check else 2
    motion = read_motion_config(config.motion_config)
    problems = check(config, motion)
    if args.check:
        print("\n".join(problems) if problems else f"{path} and {motion.path}: all well")
        return 1 if problems else 0
    if problems:
        print("\n".join(problems + ["(strix --check lists these too)"]), file=sys.stderr)
        return 2
    setup_logging(config)
    if args.demo:
        print(f"strix demo: open http://{config.host}:{config.port}/ (media in {motion.base})")
    try:
        serve(config, motion)
    except OSError as error:
        print(f"cannot serve on {config.host}:{config.port}: {error.strerror}"
              f" (change host/port in {path})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
