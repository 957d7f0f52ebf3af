#!/usr/bin/env python3
"""bench_strix: strix's figures at scale, measured on a real strix process.

Builds a media folder of processed events (hard links to a few small files), starts
`python3 strix.py -c CFG` over it as a real process and prints one line per figure,
the median of --runs runs with their min and max, and the issues' target when there is one:

    warm_start_s median=0.21 min=0.19 max=0.25 runs=5 target=0.3 met=yes

Other lines give facts (`bench ...`, `media ...`) and notes (`note section=... text="..."`).
Sections (--only, comma separated, all by default):

  processing  issue 3: one 100-frame 1280x720 event with jobs=1, queue entry to listed
  start       issue 5: cold and warm start until complete data; newest events during a start
  memory      issue 5: resident memory of the strix process tree, warm, and above an empty start
  latency     issue 5: /api/events/Camera1?limit=5 and ?limit=0 over HTTP, keep-alive
  lock        issue 5: how long the cache lock is held and waited on while expiry runs
  load        issue 5: 50 clients for 20 s while events are processed and expired

    python3 bench_strix.py --dir /tmp/strix-bench --only start,memory

--dir keeps the folders between runs (a media folder built with the same parameters is
reused, which saves most of a minute at 100,000 events); without it everything lives in a
temporary folder that is removed at the end. Every process the bench starts is ended.
"""

import argparse
import collections
import concurrent.futures
import contextlib
import gc
import http.client
import io
import itertools
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from PIL import Image, ImageDraw

import strix

#: The strix.py this bench runs (the one beside it).
STRIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "strix.py")
#: The sections, in the order they run.
SECTIONS = ("processing", "start", "memory", "latency", "lock", "load")
#: Events per camera and day in the media folder (issue 5: 500 events a day).
EVENTS_PER_DAY = 500
#: Frames per processed event in the media folder.
FRAMES_PER_EVENT = 3
#: Hard links made to one source file before a fresh copy is used (ext4 allows 65,000).
LINK_LIMIT = 60_000
#: Seconds between two polls of a starting strix: for data, and for its first answer.
POLL_SECONDS, CONNECT_POLL_SECONDS = 0.02, 0.005
#: Seconds after which any wait of the bench gives up with an error.
TIMEOUT_SECONDS = 300
#: Issue 3's event: frames (each with its debug frame), their size, frames a second.
PROCESSING_FRAMES, PROCESSING_SIZE, PROCESSING_FPS = 100, (1280, 720), 10
#: The lock section's folder (days per camera), and the days before its newest that expiry keeps.
LOCK_DAYS, LOCK_KEEP_DAYS = 10, 2
#: Requests per latency run: of ?limit=5 (and of the trivial app), of ?limit=0, of a page.
LIMIT5_REQUESTS, LIMIT0_REQUESTS, PAGE_REQUESTS = 2000, 50, 200
#: The load: clients, client processes they are shared by, seconds.
LOAD_CLIENTS, LOAD_PROCESSES, LOAD_SECONDS = 50, 2, 20
#: Days per camera, older than the media folder, that expire at the start of each load run.
LOAD_EXPIRED_DAYS = 2
#: The events written during the load, one a second: frames, size, frames a second.
LOAD_FRAMES, LOAD_SIZE, LOAD_FPS = 20, (640, 360), 10
#: The targets of issue 5, compared with each figure's median.
TARGETS = {"warm_start_s": 0.3, "cold_start_s": 3, "cold_newest5_s": 0.5,
           "memory_warm_mb": 45, "memory_bytes_per_event": 120, "latency_limit5_ms": 0.6,
           "latency_limit0_ms": 40, "lock_wait_max_ms": 2, "load_errors": 0,
           "load_p99_ms": 100}
#: A trivial waitress app, the latency floor of this machine (issue 5 quotes about 0.45 ms).
TRIVIAL_APP = """
import sys, waitress
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
"""


# Output ######################################################################

def percentile(values, share):
    """The value below which `share` (0 to 1) of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _format(value):
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.0f}"
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in " \"=\t") else text


def line(name, /, **fields):
    """Print one output line: `name key=value ...`."""
    print(" ".join([name] + [f"{key}={_format(value)}" for key, value in fields.items()]),
          flush=True)


def figure(name, values, /, **extra):
    """One figure over runs: median, min, max and runs, and the target when issue 5 sets one."""
    values = [value for value in values if value is not None]
    if not values:
        line(name, runs=0, **extra)
        return
    median = statistics.median(values)
    fields = {"median": median, "min": min(values), "max": max(values), "runs": len(values)}
    if name in TARGETS:
        fields.update(target=TARGETS[name], met="yes" if median <= TARGETS[name] else "no")
    line(name, **fields, **extra)


def note(section, text):
    line("note", section=section, text=text)


def progress(text):
    print(f"# {text}", file=sys.stderr, flush=True)


# Processes ###################################################################

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(pid):
    """`pid` and all its living descendants (zombies left out), from /proc."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    state, parent = file.read().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if state != "Z":
                children[int(parent)].append(int(entry))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children[tree[-1]])
    return tree


def resident_bytes(pids):
    """The sum of VmRSS over `pids`."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as file:
            total += sum(int(text.split()[1]) * 1024 for text in file
                         if text.startswith("VmRSS:"))
    return total


def cpu_seconds(pid):
    """(own, reaped children's) CPU seconds of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return ((int(fields[11]) + int(fields[12])) / ticks,
            (int(fields[13]) + int(fields[14])) / ticks)


def http_get(port, path, timeout=60):
    """One GET on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class KeepAlive:
    """One keep-alive HTTP connection that times each GET."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def seconds(self, path):
        """Seconds one GET of `path` took; RuntimeError unless it answered 200."""
        started = time.perf_counter()
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return seconds

    def close(self):
        self.connection.close()


def wait_until(test, what, timeout=TIMEOUT_SECONDS, every=POLL_SECONDS):
    """Call `test` every `every` seconds until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = test()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(every)


class Server:
    """A server process in its own process group (so its children can be ended with it);
    a context manager that ends the group on exit."""

    def __init__(self, command, folder, name):
        """`command` to run; an item "{port}" in it becomes the free port the server gets."""
        self.port = free_port()
        self.command = [str(self.port) if part == "{port}" else part for part in command]
        self.errors_path = os.path.join(folder, f"{name}.stderr")
        self.process = None

    def __enter__(self):
        with open(self.errors_path, "wb") as errors:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=errors,
                                            start_new_session=True)
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        """End the server and whatever it started: SIGTERM, then SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
                if not self._group_alive():
                    return

    def _group_alive(self):
        try:
            os.killpg(self.process.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def check_alive(self):
        if self.process.poll() is not None:
            with open(self.errors_path, errors="replace") as file:
                tail = file.read()[-2000:]
            raise RuntimeError(f"{self.command[1]} exited with {self.process.returncode}: {tail}")

    def get(self, path):
        """(status, body) of one GET, None while the server does not answer yet."""
        self.check_alive()
        try:
            return http_get(self.port, path)
        except ConnectionRefusedError:
            return None

    def json(self, path):
        status, body = self.get(path) or (None, b"")
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        return json.loads(body)

    def wait_answer(self, path="/"):
        """Wait until the server answers; the seconds since it was started."""
        wait_until(lambda: self.get(path), f"{self.command[1]} to answer",
                   every=CONNECT_POLL_SECONDS)
        return time.perf_counter() - self.started

    def tree(self):
        return process_tree(self.process.pid)

    def wait_children(self, timeout=120):
        """Wait until the server's children (ffmpeg, background deletes) have ended."""
        wait_until(lambda: len(self.tree()) == 1, "the server's children to end", timeout,
                   every=0.1)


class Strix(Server):
    """strix.py run over a Media folder with a strix.cfg of the given options."""

    def __init__(self, media, name, **options):
        super().__init__([sys.executable, STRIX, "-c", os.path.join(media.folder,
                                                                   f"{name}.cfg")],
                         media.folder, name)
        self.log_path = os.path.join(media.folder, f"{name}.log")
        options = {"motion_config": media.motion_conf, "host": "127.0.0.1", "port": self.port,
                   "jobs": 1, "keep_days": 0, "log": self.log_path, **options}
        with open(self.command[-1], "w") as file:
            file.write("[strix]\n" + "".join(f"{key} = {value}\n"
                                             for key, value in options.items()))
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.log_path)

    def log(self, event):
        """strix's log lines (as dicts) whose event is `event`."""
        try:
            with open(self.log_path) as file:
                lines = [json.loads(text) for text in file if f'"{event}"' in text]
        except FileNotFoundError:
            return []
        return [entry for entry in lines if entry.get("event") == event]

    def wait_log(self, event, count=1, timeout=TIMEOUT_SECONDS):
        """The `count`th log line of `event`, once strix has written it."""
        def logged():
            self.check_alive()
            entries = self.log(event)
            return entries[count - 1] if len(entries) >= count else None
        return wait_until(logged, f"strix to log {event!r}", timeout)

    def light_requests(self, media):
        """A few requests as a visitor makes them: the home page and the newest events."""
        self.get("/")
        self.get("/api/cameras/list")
        for _ in range(5):
            self.json(f"/api/events/{','.join(media.cameras)}?limit=5")


# Media folders ###############################################################

def shift_date(date, days):
    return time.strftime("%Y-%m-%d", time.gmtime(strix.midnight(date) + days * 86400))


def today():
    return strix.format_time(strix.local_now())[:10]


def days_since(date):
    return (strix.midnight(today()) - strix.midnight(date)) // 86400


def event_second(index, per_day):
    """The second of the day the `index`th event of a day starts at: spread over the day."""
    return 5 + index * ((86400 - 10) // per_day)


def spread(cameras, events, end_date, per_day=EVENTS_PER_DAY):
    """A plan {camera: {date: events}}: `events` shared by the cameras, `per_day` a day,
    days going back from `end_date` (the oldest day of a camera may be partly filled)."""
    plan = {}
    for number, camera in enumerate(cameras):
        left = events // len(cameras) + (number < events % len(cameras))
        plan[camera] = {}
        for day in itertools.count():
            if left <= 0:
                break
            plan[camera][shift_date(end_date, -day)] = min(left, per_day)
            left -= per_day
    return plan


def small_jpeg(size=(160, 90), colour=(70, 90, 120)):
    data = io.BytesIO()
    Image.new("RGB", size, colour).save(data, "JPEG", quality=80)
    return data.getvalue()


class LinkSources:
    """Small files hard-linked into many event folders; each kind moves on to a fresh copy
    every LINK_LIMIT links, as a file takes at most about 65,000 links."""

    def __init__(self, folder):
        self.folder, self.current = folder, {}
        self.data = {"frame.jpg": small_jpeg(), "thumbnail.jpg": small_jpeg(colour=(120, 90, 70)),
                     "video.m4v": b"not a real video: strix only checks it is there\n"}
        os.makedirs(folder, exist_ok=True)

    def link(self, kind, target):
        path, links = self.current.get(kind, (None, LINK_LIMIT))
        if links >= LINK_LIMIT:
            path, links = self._fresh(kind)
        os.link(path, target)
        self.current[kind] = (path, links + 1)

    def _fresh(self, kind):
        for number in itertools.count():
            path = os.path.join(self.folder, f"{number}-{kind}")
            if not os.path.exists(path):
                with open(path, "wb") as file:
                    file.write(self.data[kind])
            links = os.stat(path).st_nlink - 1
            if links < LINK_LIMIT:
                return path, links


class Media:
    """A media folder as motion and strix leave it: FOLDER/motion.conf and its camera files,
    events under FOLDER/media, laid out from a plan {camera: {date: events}}."""

    def __init__(self, folder, cameras, per_day=EVENTS_PER_DAY):
        self.folder, self.base = folder, os.path.join(folder, "media")
        self.cameras = [f"Camera{number}" for number in range(1, cameras + 1)]
        self.per_day, self.plan = per_day, {camera: {} for camera in self.cameras}
        self.motion_conf = os.path.join(folder, "motion.conf")
        os.makedirs(self.base, exist_ok=True)
        lines = ["picture_output on", "picture_output_motion on",
                 "picture_exif %D-%N-%i-%J-%K-%L", f"picture_filename {strix.PICTURE_FILENAME}",
                 f"on_event_end touch {self.base}/{strix.QUEUE_DIR}/Camera%t_%Y-%m-%d_%v"]
        for number in range(1, cameras + 1):
            camera_conf = os.path.join(folder, f"camera{number}.conf")
            with open(camera_conf, "w") as file:
                file.write(f"camera_id {number}\ntarget_dir {self.base}/Camera{number}\n"
                           f"stream_port {8080 + number}\n")
            lines.append(f"camera {camera_conf}")
        with open(self.motion_conf, "w") as file:
            file.write("\n".join(lines) + "\n")

    def prepare(self, plan, sources=None):
        """Make the folder hold exactly `plan`: build the missing or incomplete days, remove
        every other day folder (and its index file), empty the queues. Returns days built."""
        for folder in (strix.QUEUE_DIR, strix.DELETE_DIR):
            shutil.rmtree(os.path.join(self.base, folder), ignore_errors=True)
            os.makedirs(os.path.join(self.base, folder))
        built = 0
        for camera in self.cameras:
            camera_dir = os.path.join(self.base, camera)
            os.makedirs(camera_dir, exist_ok=True)
            days = plan.get(camera, {})
            for name in os.listdir(camera_dir):
                if name not in days:
                    self._remove_day(camera, name)
            for date, count in sorted(days.items()):
                day_dir = os.path.join(camera_dir, date)
                if os.path.isdir(day_dir) and len(os.listdir(day_dir)) == count:
                    continue
                self._remove_day(camera, date)
                sources = sources or LinkSources(os.path.join(self.folder, "sources"))
                self._build_day(camera, date, count, sources)
                built += 1
        self.plan = plan
        return built

    def _remove_day(self, camera, name):
        shutil.rmtree(os.path.join(self.base, camera, name), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.base, strix.INDEX_DIR, camera, f"{name}.json"))

    def _build_day(self, camera, date, count, sources):
        """One day of processed events, built aside and renamed into place, its folder's
        mtime set to the end of that day (as if it had been last written then)."""
        building = os.path.join(self.base, camera, f".build-{date}")
        shutil.rmtree(building, ignore_errors=True)
        os.mkdir(building)
        for index in range(count):
            second = event_second(index, self.per_day)
            event_dir = os.path.join(building, strix.event_name(second << 8))
            os.mkdir(event_dir)
            os.mkdir(os.path.join(event_dir, "debug"))
            for frame in range(FRAMES_PER_EVENT):
                sources.link("frame.jpg", os.path.join(
                    event_dir, f"{strix.event_name((second + frame) << 8)}-00.jpg"))
            sources.link("thumbnail.jpg", os.path.join(event_dir, "thumbnail.jpg"))
            sources.link("video.m4v", os.path.join(event_dir, "video.m4v"))
            sources.link("video.m4v", os.path.join(event_dir, "debug", "video.m4v"))
        day_dir = os.path.join(self.base, camera, date)
        os.rename(building, day_dir)
        end_of_day = time.mktime(time.strptime(f"{date} 23:59:59", strix.TIME_FORMAT))
        os.utime(day_dir, (end_of_day, end_of_day))

    def count(self, camera=None):
        return sum(sum(self.plan[name].values()) for name in ([camera] if camera else self.plan))

    def starts(self, camera):
        """The start times ('YYYY-MM-DD HH:MM:SS') of a camera's planned events, newest first."""
        for date in sorted(self.plan[camera], reverse=True):
            for index in range(self.plan[camera][date] - 1, -1, -1):
                yield f"{date} {strix.format_time(event_second(index, self.per_day))[11:]}"

    def newest(self, camera, count):
        """A camera's `count` newest start times, oldest first, as the API lists them."""
        return list(itertools.islice(self.starts(camera), count))[::-1]

    def oldest(self, camera):
        date = min(self.plan[camera])
        return f"{date} {strix.format_time(event_second(0, self.per_day))[11:]}"


def drawn_frames(folder, count, size, fps):
    """`count` (frame, debug frame) JPEG pairs of `size`, drawn once into `folder` and reused:
    a noisy scene with a box moving across it, and motion's EXIF ImageDescription
    (changed-noise-w-h-x-y) on each frame."""
    width, height = size
    frames_dir = os.path.join(folder, f"frames-{width}x{height}-{count}")
    pairs = [(os.path.join(frames_dir, f"{step:03d}.jpg"),
              os.path.join(frames_dir, f"{step:03d}m.jpg")) for step in range(count)]
    if all(os.path.exists(mask) for _, mask in pairs):
        return pairs
    os.makedirs(frames_dir, exist_ok=True)
    gradient = Image.linear_gradient("L").resize(size)
    scene = Image.merge("RGB", (gradient, Image.effect_noise(size, 30),
                                gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    box_width, box_height = width // 8, height // 3
    for step, (frame_path, mask_path) in enumerate(pairs):
        x = step * (width - box_width) // max(count - 1, 1)
        y = height // 2 - box_height // 2 + int(height / 10 * math.sin(step / fps * 3))
        box = (x, y, x + box_width, y + box_height)
        image = scene.copy()
        ImageDraw.Draw(image).rectangle(box, fill=(230, 80, 60))
        exif = Image.Exif()
        changed = box_width * box_height - abs(step - count // 2) * 50
        exif[270] = f"{changed}-12-{box_width}-{box_height}-{x + box_width // 2}-" \
                    f"{y + box_height // 2}"
        mask = Image.new("L", size)
        ImageDraw.Draw(mask).rectangle(box, fill=255)
        for picture, path, extra in ((image, frame_path, {"exif": exif}), (mask, mask_path, {})):
            picture.save(path + ".part", "JPEG", quality=85, **extra)
            os.replace(path + ".part", path)
    return pairs


def write_motion_event(event_dir, frames, start, fps, link=False):
    """An unprocessed event folder as motion writes it: HH-MM-SS-FF.jpg frames and their
    HH-MM-SS-FFm.jpg debug frames, `fps` a second from `start` (local wall-clock seconds)."""
    os.makedirs(event_dir)
    put = os.link if link else shutil.copyfile
    for step, (frame, mask) in enumerate(frames):
        name = f"{strix.event_name((start + step // fps) % 86400 << 8)}-{step % fps:02d}"
        put(frame, os.path.join(event_dir, f"{name}.jpg"))
        put(mask, os.path.join(event_dir, f"{name}m.jpg"))


def touch(path):
    open(path, "w").close()


# Sections ####################################################################

class Bench:
    """What the sections share: the arguments, the work folder, the media folders built
    and the start runs (which both the start and the memory sections use)."""

    def __init__(self, args, folder):
        self.args, self.folder, self.runs = args, folder, args.runs
        self.medias, self.start_results = {}, {}

    def media(self, name="main", events=None):
        """The media folder FOLDER/name with `events` events (default --events), reused when
        its stamp says it was built with the same parameters; its plan ends on the day
        before it was first built, so no event is ever in the future."""
        if name in self.medias:
            media = self.medias[name]
            media.prepare(media.plan_built)
            return media
        events = self.args.events if events is None else events
        folder = os.path.join(self.folder, name)
        stamp_path = os.path.join(folder, "bench.json")
        wanted = {"events": events, "cameras": self.args.cameras, "per_day": EVENTS_PER_DAY}
        try:
            with open(stamp_path) as file:
                stamp = json.load(file)
        except (OSError, ValueError):
            stamp = {}
        if {key: stamp.get(key) for key in wanted} != wanted:
            shutil.rmtree(folder, ignore_errors=True)
            stamp = {**wanted, "end_date": shift_date(today(), -1)}
        media = Media(folder, self.args.cameras)
        media.plan_built = spread(media.cameras, events, stamp["end_date"])
        progress(f"preparing {folder} ({events} events)")
        started = time.monotonic()
        built = media.prepare(media.plan_built)
        with open(stamp_path, "w") as file:
            json.dump(stamp, file)
        line("media", name=name, events=events, cameras=self.args.cameras,
             days=len(media.plan_built[media.cameras[0]]), per_day=EVENTS_PER_DAY,
             end_date=stamp["end_date"], days_built=built,
             seconds=round(time.monotonic() - started, 2), dir=media.base)
        self.medias[name] = media
        return media


def bench_processing(bench):
    """Issue 3: seconds from an event's queue entry to its being listed by the API."""
    media = Media(os.path.join(bench.folder, "processing"), cameras=1)
    shutil.rmtree(media.base, ignore_errors=True)
    media.prepare({})
    frames = drawn_frames(bench.folder, PROCESSING_FRAMES, PROCESSING_SIZE, PROCESSING_FPS)
    listed, processed = [], []
    with Strix(media, "processing", jobs=1) as server:
        server.wait_answer()
        server.wait_log("preload done")
        for run in range(bench.runs):
            start = strix.local_now() - PROCESSING_FRAMES // PROCESSING_FPS - 1
            date, first = strix.format_time(start)[:10], strix.format_time(start)
            number = f"{run + 1:02d}"
            write_motion_event(os.path.join(media.base, "Camera1", date, number), frames, start,
                               PROCESSING_FPS)
            started = time.perf_counter()
            touch(os.path.join(media.base, strix.QUEUE_DIR, f"Camera1_{date}_{number}"))
            wait_until(lambda: first in [event["start"] for event in server.json(
                "/api/events/Camera1?limit=0")["events"]["Camera1"]], "the event to be listed")
            listed.append(time.perf_counter() - started)
            processed.append(server.wait_log("event processed", count=run + 1)["seconds"])
            progress(f"processing run {run + 1}: {listed[-1]:.2f} s")
    line("processing_event", frames=PROCESSING_FRAMES, debug_frames=PROCESSING_FRAMES,
         size="x".join(map(str, PROCESSING_SIZE)), fps=PROCESSING_FPS, jobs=1,
         codec=" ".join(strix.Config().video_codec))
    figure("processing_s", listed)
    figure("processing_strix_s", processed)
    note("processing", "processing_s runs from touching the queue entry to the first API poll"
         f" (every {POLL_SECONDS * 1000:.0f} ms) listing the event; strix looks at its queue"
         " every 1 s, so it includes 0-1 s (0.5 s on average) of waiting for that look."
         " processing_strix_s is strix's own 'event processed' seconds (both videos, the"
         " thumbnail, the rename and the cache), without that wait.")


def watch_start(server, media):
    """Poll a starting strix: seconds from spawn to its first answer, to the newest 5 events
    of every camera being served, and to complete data (every planned event listed)."""
    cameras = ",".join(media.cameras)
    groups = collections.defaultdict(list)
    for camera in media.cameras:
        groups[media.count(camera)].append(camera)
    newest = {camera: media.newest(camera, 5) for camera in media.cameras}
    times = {"answer": server.wait_answer("/api/cameras/list")}

    def elapsed():
        return time.perf_counter() - server.started

    def starts(events):
        return {camera: [event["start"] for event in listed] for camera, listed in events.items()}

    def complete():
        """True when each camera's oldest event is listed and no more than planned."""
        for count, group in groups.items():
            path = f"/api/events/{','.join(group)}?limit=1&offset="
            if count and any(found != [media.oldest(camera)] for camera, found in
                             starts(server.json(f"{path}{count - 1}")["events"]).items()):
                return False
            if any(starts(server.json(f"{path}{count}")["events"]).values()):
                raise RuntimeError("strix lists more events than the media folder holds")
        return True

    def poll():
        if "newest5" not in times and starts(
                server.json(f"/api/events/{cameras}?limit=5")["events"]) == newest:
            times["newest5"] = elapsed()
        if "newest5" in times and complete():
            times["complete"] = elapsed()
        return "complete" in times
    wait_until(poll, "strix to list every event")
    return times


def start_runs(bench, kind):
    """Start strix `bench.runs` times over the media folder, `kind` being cold (its index
    files deleted first) or warm; each run's start times, preload seconds and memory."""
    if kind in bench.start_results:
        return bench.start_results[kind]
    media = bench.media()
    if kind == "warm" and not os.path.isdir(os.path.join(media.base, strix.INDEX_DIR)):
        with Strix(media, "warm-up") as server:  # writes the index files a warm start reads
            watch_start(server, media)
    results = []
    for run in range(bench.runs):
        if kind == "cold":
            shutil.rmtree(os.path.join(media.base, strix.INDEX_DIR), ignore_errors=True)
        with Strix(media, kind) as server:
            result = watch_start(server, media)
            result["preload"] = server.wait_log("preload done")["seconds"]
            server.light_requests(media)
            result["rss"] = resident_bytes(server.tree())
        progress(f"{kind} start {run + 1}: " + " ".join(f"{key}={value:.3f}"
                                                        for key, value in result.items()
                                                        if key != "rss")
                 + f" rss={result['rss'] / 2**20:.1f} MB")
        results.append(result)
    bench.start_results[kind] = results
    return results


def bench_start(bench):
    """Issue 5: cold and warm start until complete data, and the newest events on the way."""
    floor = []
    for _ in range(bench.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, STRIX, "--version"], check=True,
                       stdout=subprocess.DEVNULL)
        floor.append(time.perf_counter() - started)
    for kind in ("cold", "warm"):
        results = start_runs(bench, kind)
        figure(f"{kind}_start_s", [result["complete"] for result in results])
        figure(f"{kind}_newest5_s", [result["newest5"] for result in results])
        figure(f"{kind}_answer_s", [result["answer"] for result in results])
        figure(f"{kind}_preload_s", [result["preload"] for result in results])
    figure("python_start_s", floor)
    note("start", "Times run from spawning `python3 strix.py -c CFG`: *_answer_s to the first"
         " HTTP answer, *_newest5_s to ?limit=5 listing every camera's newest 5 events,"
         " *_start_s to every event being listed (each camera's oldest event at"
         f" ?offset=N-1, none at ?offset=N), polled every {POLL_SECONDS * 1000:.0f} ms;"
         " *_preload_s is strix's own 'preload done' seconds; python_start_s is"
         " `strix.py --version`, the interpreter and imports alone. Cold deletes BASE/.strix;"
         " the OS file cache stays warm in both.")


def bench_memory(bench):
    """Issue 5: resident memory of the strix process tree, warm and above an empty start."""
    media = Media(os.path.join(bench.folder, "empty"), bench.args.cameras)
    media.prepare({})
    empty = []
    for _ in range(bench.runs):
        with Strix(media, "empty") as server:
            server.wait_answer()
            server.wait_log("preload done")
            server.light_requests(media)
            empty.append(resident_bytes(server.tree()))
    warm = [result["rss"] for result in start_runs(bench, "warm")]
    events = bench.media().count()
    figure("memory_warm_mb", [rss / 2**20 for rss in warm], events=events)
    figure("memory_empty_mb", [rss / 2**20 for rss in empty])
    figure("memory_bytes_per_event", [(rss - statistics.median(empty)) / events for rss in warm])
    if "cold" in bench.start_results:
        figure("memory_cold_mb", [result["rss"] / 2**20 for result in bench.start_results["cold"]])
    note("memory", "VmRSS summed over strix and its children, after the start completed and a"
         " few requests (the home page, the cameras, ?limit=5 of every camera);"
         " bytes per event = (warm - median empty) / events.")


def latency_runs(port, requests, runs, figures):
    """On one keep-alive connection to `port`, after a warm-up, `runs` times: `count` GETs
    of each (name, path, count) in `requests`, their median and p99 added to `figures`
    as latency_NAME_ms and latency_NAME_p99_ms."""
    connection = KeepAlive(port)
    try:
        for _, path, count in requests:
            for _ in range(max(3, count // 20)):
                connection.seconds(path)
        for run in range(runs):
            for name, path, count in requests:
                times = [connection.seconds(path) for _ in range(count)]
                figures[f"latency_{name}_ms"].append(statistics.median(times) * 1000)
                figures[f"latency_{name}_p99_ms"].append(percentile(times, 0.99) * 1000)
            progress(f"latency run {run + 1}: " + ", ".join(
                f"{name} {figures[f'latency_{name}_ms'][-1]:.3f} ms" for name, *_ in requests))
    finally:
        connection.close()


def bench_latency(bench):
    """Issue 5: the API (and the pages) over HTTP on a keep-alive connection, and a trivial
    waitress app as the floor."""
    media = bench.media()
    figures = collections.defaultdict(list)
    requests = [("limit5", "/api/events/Camera1?limit=5", LIMIT5_REQUESTS),
                ("limit0", "/api/events/Camera1?limit=0", LIMIT0_REQUESTS),
                ("home", "/", PAGE_REQUESTS), ("camera", "/camera/Camera1", PAGE_REQUESTS)]
    with Strix(media, "latency") as server:
        watch_start(server, media)
        if server.get("/camera/Camera1")[0] != 200:
            requests.pop()
        latency_runs(server.port, requests, bench.runs, figures)
    with Server([sys.executable, "-c", TRIVIAL_APP, "{port}"], bench.folder, "trivial") as server:
        server.wait_answer()
        latency_runs(server.port, [("trivial", "/", LIMIT5_REQUESTS)], bench.runs, figures)
    for name, values in figures.items():
        figure(name, values)
    note("latency", "Per run, the median and p99 of " + ", ".join(
        f"{count} GETs of {path}" for _, path, count in requests)
         + f" (Camera1 has {media.count('Camera1')} events), one after the other on one"
         " keep-alive http.client connection, warm; latency_trivial_* is a trivial waitress"
         " app (8 threads) answering {} the same way.")


class TimedLock:
    """A cache lock that records how long each hold lasts (`holds`, seconds)."""

    def __init__(self, inner):
        self.inner, self.holds, self._since = inner, [], 0

    def acquire(self, *args, **kwargs):
        acquired = self.inner.acquire(*args, **kwargs)
        if acquired:
            self._since = time.perf_counter()
        return acquired

    def release(self):
        self.holds.append(time.perf_counter() - self._since)
        self.inner.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def probe_lock(lock, stop, waits):
    """Like a request every 0.2 ms: take the lock and note how long it was waited for
    (0 when it was free), until `stop` is set."""
    while not stop.is_set():
        started = time.perf_counter()
        if not lock.acquire(blocking=False):
            lock.acquire()
            waits.append(time.perf_counter() - started)
        else:
            waits.append(0.0)
        lock.release()
        time.sleep(0.0002)


def bench_lock(bench):
    """Issue 5: in-process, the longest wait on (and hold of) the cache lock while expiry
    runs over most of a folder of LOCK_DAYS days x 500 events a camera."""
    media = bench.media("lock", bench.args.cameras * LOCK_DAYS * EVENTS_PER_DAY)
    strix.setup_logging(strix.Config(log=os.path.join(media.folder, "lock.log")))
    camera_ids = strix.read_motion_config(media.motion_conf).camera_ids
    figures = collections.defaultdict(list)
    for run in range(bench.runs):
        if run:
            media.prepare(media.plan_built)
        cache = strix.EventCache(media.base, camera_ids, keep_days=0)
        cache.lock = TimedLock(cache.lock)
        cache.preload()
        gc.freeze()  # as strix's serve() does after its preload
        cache.keep_days = days_since(max(max(days) for days in media.plan.values())) \
            + LOCK_KEEP_DAYS
        waits, stop = [], threading.Event()
        probe = threading.Thread(target=probe_lock, args=(cache.lock.inner, stop, waits))
        probe.start()
        cache.lock.holds.clear()
        started = time.perf_counter()
        try:
            cache.expire()
        finally:
            seconds = time.perf_counter() - started
            stop.set()
            probe.join()
        for child in multiprocessing.active_children():  # the background deletes
            child.join(TIMEOUT_SECONDS)
        figures["lock_wait_max_ms"].append(max(waits) * 1000)
        figures["lock_wait_p99_ms"].append(percentile(waits, 0.99) * 1000)
        figures["lock_hold_max_ms"].append(max(cache.lock.holds) * 1000)
        figures["lock_expire_s"].append(seconds)
        figures["lock_expired_events"].append(cache.last_expiry["events"])
        progress(f"lock run {run + 1}: wait max {max(waits) * 1000:.2f} ms, expiry {seconds:.2f} s")
    for name, values in figures.items():
        figure(name, values)
    note("lock", f"In-process over {media.count()} events ({LOCK_DAYS} days x {EVENTS_PER_DAY}"
         f" events x {bench.args.cameras} cameras), keep_days set so that expiry removes every"
         f" event more than {LOCK_KEEP_DAYS} days older than the newest day (lock_expired_events"
         " of them); a probe thread takes cache.lock every 0.2 ms during"
         " cache.expire(): lock_wait_* are its waits (including the GIL hand-over after the"
         " release), lock_hold_max_ms the longest single hold of the lock by any thread.")


def load_client(port, paths, deadline, latencies, errors):
    """One client: its own keep-alive connection, cycling through `paths` until `deadline`."""
    connection = None
    for number in itertools.count():
        if time.monotonic() >= deadline:
            break
        kind, path = paths[number % len(paths)]
        started = time.perf_counter()
        try:
            connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"{path}: {response.status}")
                continue
            latencies[kind].append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException) as error:
            errors.append(f"{path}: {error!r}")
            connection.close()
            connection = None
    if connection:
        connection.close()


def load_clients(port, paths, clients, seconds, first):
    """In a client process: `clients` threads of load_client for `seconds`; returns
    ({kind: latencies}, errors, CPU seconds of this process)."""
    deadline = time.monotonic() + seconds
    latencies, errors = collections.defaultdict(list), []
    threads = [threading.Thread(target=load_client, args=(
        port, paths[number % len(paths):] + paths[:number % len(paths)], deadline,
        latencies, errors)) for number in range(first, first + clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(latencies), errors, time.process_time()


def feed_events(media, frames, stop, fed):
    """Write a motion-style event of the next camera and its queue entry every second."""
    for number in itertools.count(1):
        camera = media.cameras[number % len(media.cameras)]
        start = strix.local_now() - LOAD_FRAMES // LOAD_FPS
        date = strix.format_time(start)[:10]
        write_motion_event(os.path.join(media.base, camera, date, f"9{number:05d}"), frames,
                           start, LOAD_FPS, link=True)
        touch(os.path.join(media.base, strix.QUEUE_DIR, f"{camera}_{date}_9{number:05d}"))
        fed.append(number)
        if stop.wait(1):
            break


def bench_load(bench):
    """Issue 5: LOAD_CLIENTS clients for LOAD_SECONDS mixing the home page, the API and a
    camera page, while an event is written every second and old days expire."""
    media = bench.media()
    oldest = min(min(days) for days in media.plan_built.values())
    plan = {camera: {**days, **{shift_date(oldest, -2 - day): EVENTS_PER_DAY
                                for day in range(LOAD_EXPIRED_DAYS)}}
            for camera, days in media.plan_built.items()}
    frames = drawn_frames(bench.folder, LOAD_FRAMES, LOAD_SIZE, LOAD_FPS)
    figures, camera_page = collections.defaultdict(list), None
    errors_seen = collections.Counter()
    for run in range(bench.runs):
        media.prepare(plan)
        with Strix(media, "load", jobs=1, keep_days=days_since(oldest) + 1,
                   check_minutes=1) as server:
            server.wait_answer()
            if camera_page is None:
                camera_page = (server.get("/camera/Camera1") or (0,))[0] == 200
            paths = [(kind, path) for camera in media.cameras for kind, path in (
                ("home", "/"), ("api", f"/api/events/{camera}?limit=5"),
                ("camera", f"/camera/{camera}") if camera_page else ("home", "/"))]
            cpu_before, stop, fed = cpu_seconds(server.process.pid), threading.Event(), []
            share = LOAD_CLIENTS // LOAD_PROCESSES
            with concurrent.futures.ProcessPoolExecutor(
                    LOAD_PROCESSES, mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [pool.submit(load_clients, server.port, paths,
                                       share + (number < LOAD_CLIENTS % LOAD_PROCESSES),
                                       LOAD_SECONDS, number * share)
                           for number in range(LOAD_PROCESSES)]
                feeder = threading.Thread(target=feed_events, args=(media, frames, stop, fed))
                feeder.start()
                try:
                    results = [future.result() for future in futures]
                finally:
                    stop.set()
                    feeder.join()
            cpu_after = cpu_seconds(server.process.pid)
            expiry = server.wait_log("expired")
            processed = len(server.log("event processed"))
            server.wait_children()
        latencies = collections.defaultdict(list)
        errors = []
        for kinds, run_errors, _ in results:
            errors += run_errors
            for kind, values in kinds.items():
                latencies[kind] += values
        every = [value for values in latencies.values() for value in values]
        errors_seen.update(error.split(": ", 1)[1][:80] for error in errors)
        figures["load_errors"].append(len(errors))
        figures["load_requests_per_s"].append((len(every) + len(errors)) / LOAD_SECONDS)
        figures["load_p50_ms"].append(percentile(every, 0.5) * 1000)
        figures["load_p99_ms"].append(percentile(every, 0.99) * 1000)
        figures["load_max_ms"].append(max(every) * 1000)
        for kind, values in sorted(latencies.items()):
            figures[f"load_p99_{kind}_ms"].append(percentile(values, 0.99) * 1000)
        figures["load_events_written"].append(len(fed))
        figures["load_events_processed"].append(processed)
        figures["load_expired_events"].append(expiry["events"])
        figures["load_expiry_s"].append(expiry["seconds"])
        figures["load_strix_cores"].append((cpu_after[0] - cpu_before[0]) / LOAD_SECONDS)
        figures["load_ffmpeg_cores"].append((cpu_after[1] - cpu_before[1]) / LOAD_SECONDS)
        figures["load_client_cores"].append(sum(result[2] for result in results) / LOAD_SECONDS)
        progress(f"load run {run + 1}: {len(every)} requests, {len(errors)} errors, p99 "
                 f"{figures['load_p99_ms'][-1]:.1f} ms")
    media.prepare(media.plan_built)
    for name, values in figures.items():
        figure(name, values)
    if errors_seen:
        line("load_error_kinds", **{f"e{number}": f"{count}x {text}" for number, (text, count)
                                    in enumerate(errors_seen.most_common(5), 1)})
    if not camera_page:
        note("load", "/camera/CameraN does not answer 200 yet: the camera page share of the"
             " mix went to / instead.")
    note("load", f"{LOAD_CLIENTS} clients (threads in {LOAD_PROCESSES} processes, each with its"
         " own keep-alive connection, no pause between requests) on this 2-core machine,"
         " which they share with strix and ffmpeg (load_*_cores: CPU cores each used);"
         " the clients start as soon as strix answers, so the load covers the end of its"
         f" preload and its expiry of {LOAD_EXPIRED_DAYS} old days a camera (strix expires at"
         " most every check_minutes, at least 1 min, so once a run), while a"
         f" {LOAD_FRAMES}-frame {LOAD_SIZE[0]}x{LOAD_SIZE[1]} event is written and queued every"
         " second (jobs=1). Latency is from sending a request to reading its whole answer.")


# Command line ################################################################

@contextlib.contextmanager
def workspace(folder):
    """`folder` (created, kept), or a temporary folder removed at the end."""
    if folder:
        os.makedirs(folder, exist_ok=True)
        yield os.path.abspath(folder)
        return
    with tempfile.TemporaryDirectory(prefix="strix-bench-") as temporary:
        yield temporary


def strix_revision():
    """The commit of strix.py, with +changes when the working copy differs from it."""
    folder = os.path.dirname(STRIX)
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", folder, "status", "--porcelain", "strix.py"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--events", type=int, default=100_000,
                        help="processed events in the media folder (default 100000)")
    parser.add_argument("--cameras", type=int, default=4, help="cameras (default 4)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="sections to run, comma separated (default: all)")
    parser.add_argument("--dir", help="work folder to keep and reuse (default: a temporary one)")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown or args.events < args.cameras or args.cameras < 1 or args.runs < 1:
        parser.error(f"unknown sections {unknown}: choose from {','.join(SECTIONS)}" if unknown
                     else "need --runs >= 1 and --events >= --cameras >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so every finally block runs
    started = time.monotonic()
    with workspace(args.dir) as folder:
        line("bench", date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cores=os.cpu_count(),
             python=platform.python_version(), machine=platform.machine(),
             strix=strix.__version__, revision=strix_revision(), events=args.events,
             cameras=args.cameras, runs=args.runs, sections=",".join(sections), dir=folder)
        bench = Bench(args, folder)
        for name in SECTIONS:
            if name in sections:
                progress(f"section {name}")
                globals()[f"bench_{name}"](bench)
        line("bench_done", seconds=round(time.monotonic() - started, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
