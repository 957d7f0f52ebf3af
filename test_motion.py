"""End-to-end test against the real motion daemon (Debian's motion 4.5.1).

A synthetic MJPEG camera (stdlib http.server + Pillow, SyntheticCamera) shows a still
scene in which a bright box moves for MOVE s every PERIOD s; motion, with two cameras
both reading that stream, records each pass as one event. The module-scoped fixture
`motion_run` runs motion once for all tests here, until each camera has ended
EVENTS_PER_CAMERA events, then stops it with SIGTERM. MediaRecorder (inotify) notes the
queue entries as they appear and hard-links every frame motion writes into
.../recorded/, so the frames stay checkable even once strix has moved them.

* test_motion_records_events_as_strix_expects (phase 1): what motion wrote.
* test_motion_events_become_strix_events (phase 2): strix.py runs alongside motion
  (started before it, by the same fixture, after `strix --check` passed on the same
  motion.conf) and must serve every event with an H.264 video, a debug video and a
  thumbnail.

Run: python3 -m pytest -x -q test_motion.py    (about 45 s; needs motion, and ffmpeg
for phase 2; everything listens on 127.0.0.1 only.)

What motion 4.5.1 really does (observed with this setup, motion.conf as written by
MotionSetup.write below):

* Folders: motion creates the whole path itself (BASE/CameraN need not exist; BASE/queue
  must, since only touch writes there). With `picture_filename
  %Y-%m-%d/%v/%H-%M-%S-%q` an event's frames land in BASE/CameraN/YYYY-MM-DD/NN/; the
  date is each frame's own (so an event crossing midnight is split over two day folders
  with the same NN: not observed here, follows from the format).
* %v, the event number, is zero-padded to two digits: 01, 02, ... It counts per camera
  from 01 and is NOT kept across restarts: after a restart the next event is 01 again,
  its frames go into the same BASE/CameraN/DATE/01/ as the earlier event 01 (two events
  mixed in one folder, if nobody moved it first) and on_event_end touches the same
  queue entry name again (a touch of an existing entry only changes its mtime).
* %t is the camera_id, so on_event_end `/usr/bin/touch BASE/queue/Camera%t_%Y-%m-%d_%v`
  creates e.g. queue/Camera1_2026-11-28_01, an empty file, when the event ends: about
  event_gap s after the last frame with motion, so an event's last frame (a
  post_capture one) is written well over a second before its queue entry appears. The command is not logged
  (not even at log_level 7). Not observed: its date
  is presumably taken when the event ends (the next day's for an event over midnight).
* Frames: HH-MM-SS-FF.jpg, FF = %q the frame number within that second (00-09 at
  10 fps). With `picture_output_motion on` each frame that had motion also gets a debug
  frame HH-MM-SS-FFm.jpg (the grey motion mask) beside it; the pre_capture frame(s)
  and the trailing post_capture frames have no m twin; every m frame has its normal
  twin. Frames are 320x240, the camera's own size; motion draws the date and time
  bottom right (its default text_right).
* EXIF: `picture_exif %D-%N-%i-%J-%K-%L` gives ImageDescription (tag 270, Pillow
  Image.open(f).getexif().get(270)) such as "3856-32-130-64-111-94": changed pixels,
  noise level, motion area width, height, centre x, centre y; integers, on normal and
  debug frames alike. The pre_capture frame has 0-32-0-0-0-0, post_capture frames e.g.
  262-32-0-0-0-0. The values change only every 3rd frame or so, %D can stay the same
  for a whole pass, and the area spans the object and its ghost (below), up to 318
  wide: not per-frame data. %N is 32 because noise_tune is off (noise_level 32).
* Startup: without -m motion reports a spurious whole-frame event ~4 s after start
  (area 318x238, ~10000 changed pixels) that then swallows the first real motion. With
  -m detection is paused ("motion detection Disabled" in the log) and nothing is
  recorded until `GET http://127.0.0.1:WEBCONTROL/0/detection/start` (answer, with
  webcontrol_interface 1: "Camera 0 Detection resumed\nDone"); /0/detection/status then
  says "Camera N Detection status ACTIVE" per camera. webcontrol_parms 0 is enough: it
  only limits which config parameters the webcontrol lists, not these actions.
* netcam_url http://... goes through motion's ffmpeg netcam code ("Opening Netcam
  RTSP", "Setting up http via netcam", input_format mjpeg) and reads
  multipart/x-mixed-replace fine. Each camera connects twice: a probe that reads ~5
  frames and closes, then the lasting connection.
* Ghost: motion only flags a newly appeared object ~0.6-0.9 s after it appears; during
  those frames the object is partly averaged into motion's reference frame, so once it
  has gone its "ghost" (~1500 changed pixels where it first showed up) still counts as
  motion until motion accepts it as static, ~10 s after the object appeared. So a 4 s
  pass makes an event of ~11 s of frames that ends ~13 s after the object appeared:
  the still time between passes must be longer than that (PERIOD 18 s here), else two
  passes merge into one event.
* SIGTERM: motion ends an open event, still runs on_event_end (the queue entry
  appears), and exits with status 0 in ~2.5-3 s.

Seen with strix.py of 2026-11-28: strix picks each entry up
within a second and processes an event in ~0.3 s; its video lasts (end - start) + 1 s
(12.0 s for an 11 s event), the debug video ~(end - start).
"""

import contextlib
import ctypes
import ctypes.util
import http.server
import io
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
MOTION = "/usr/bin/motion"

#: The synthetic camera's picture.
WIDTH, HEIGHT, FPS = 320, 240, 10
BOX = 48
#: Stream time (s) of the box's first pass, how long a pass lasts, and the cycle.
FIRST, MOVE, PERIOD = 6.0, 4.0, 18.0
#: motion settings the assertions depend on.
CAMERA_IDS = (1, 2)
EVENT_GAP, THRESHOLD, NOISE_LEVEL = 2, 300, 32
#: Seconds after motion's start before detection is switched on (motion -m).
DETECTION_AFTER = 3.0
EVENTS_PER_CAMERA = 2
#: Give up waiting for the events this long after motion started.
EVENTS_TIMEOUT = 80.0

QUEUE_RE = re.compile(r"(Camera(\d+))_(\d{4}-\d{2}-\d{2})_(\d+)\Z")
FRAME_RE = re.compile(r"(\d{2})-(\d{2})-(\d{2})-(\d{2})(m?)\.jpg\Z")
EXIF_RE = re.compile(r"(\d+)-(\d+)-(\d+)-(\d+)-(\d+)-(\d+)\Z")

_ports_given = set()


def free_port():
    """A free TCP port on 127.0.0.1, never the same twice in one test run."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_until(condition, timeout, interval=0.2):
    """Poll condition() until it returns something true (returned) or timeout (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def stop_process(process, timeout=15, leftovers=True):
    """Stop a process started with start_new_session=True: SIGTERM to its group, then
    SIGKILL after `timeout` s; with `leftovers`, then SIGKILL whatever is still in its
    group (a touch from on_event_end, an ffmpeg). Returns its exit status."""
    if process is None:
        return None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    if leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


def tail(path, lines=40, skip="event_newfile: Writing image"):
    """The last lines of a log file, less motion's line per frame written."""
    try:
        with open(path, errors="replace") as file:
            return "".join([line for line in file if skip not in line][-lines:])
    except OSError as error:
        return f"({path}: {error.strerror})"


# The synthetic camera ########################################################

class SyntheticCamera:
    """An MJPEG camera on 127.0.0.1: multipart/x-mixed-replace JPEG frames at FPS of a
    still scene in which a bright box moves for MOVE s every PERIOD s from FIRST s on,
    by the stream's own clock (seconds since the server started)."""

    BOUNDARY = "strixframe"

    def __init__(self):
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.cache = {}
        self.served = {}  # connection number -> frames sent on it
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; "
                                 f"boundary={SyntheticCamera.BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                with contextlib.suppress(OSError):
                    camera.stream(self.wfile)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="camera",
                                       daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def clock(self):
        return time.monotonic() - self.started

    @staticmethod
    def box_at(t):
        """Top left corner of the box at stream time t, None while the scene is still."""
        if t < FIRST or (t - FIRST) % PERIOD >= MOVE:
            return None
        progress = ((t - FIRST) % PERIOD) / MOVE
        return int(30 + progress * (WIDTH - 60 - BOX)), int(60 + progress * 60)

    @staticmethod
    def passes_until(t):
        """How many passes of the box have ended by stream time t."""
        return 0 if t < FIRST + MOVE else int((t - FIRST - MOVE) // PERIOD) + 1

    def frame(self, t):
        box = self.box_at(t)
        with self.lock:
            if box in self.cache:
                return self.cache[box]
        image = Image.new("RGB", (WIDTH, HEIGHT), (16, 18, 28))
        draw = ImageDraw.Draw(image)
        draw.rectangle((10, 180, 110, 230), fill=(60, 60, 90))
        draw.ellipse((230, 20, 300, 90), fill=(80, 40, 40))
        draw.line((0, 170, WIDTH, 160), fill=(50, 70, 50), width=3)
        if box:
            x, y = box
            draw.rectangle((x, y, x + BOX, y + BOX), fill=(250, 250, 240))
        data = io.BytesIO()
        image.save(data, "JPEG", quality=85)
        with self.lock:
            self.cache[box] = data.getvalue()
        return data.getvalue()

    def stream(self, out):
        with self.lock:
            connection = len(self.served)
            self.served[connection] = 0
        number = int(self.clock() * FPS)
        while not self.stopping.is_set():
            wait = number / FPS - self.clock()
            if wait > 0:
                time.sleep(wait)
            data = self.frame(number / FPS)
            out.write(f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
            out.flush()
            self.served[connection] += 1
            number = max(number + 1, int(self.clock() * FPS))

    def viewers(self, frames):
        """How many connections have been sent at least `frames` frames."""
        return sum(count >= frames for count in list(self.served.values()))


# Watching what motion writes #################################################

class Inotify:
    """Just enough of Linux inotify, through ctypes."""

    CLOSE_WRITE, ATTRIB, MOVED_TO, CREATE = 0x8, 0x4, 0x80, 0x100
    Q_OVERFLOW, ISDIR = 0x4000, 0x40000000
    HEADER = struct.Struct("iIII")

    def __init__(self):
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def add(self, path, mask):
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path} failed")
        return wd

    def read(self, timeout):
        """[(wd, mask, name)] of the events that came within `timeout` s."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset < len(data):
            wd, mask, _cookie, length = self.HEADER.unpack_from(data, offset)
            offset += self.HEADER.size
            name = data[offset:offset + length].split(b"\0", 1)[0]
            offset += length
            events.append((wd, mask, os.fsdecode(name)))
        return events

    def close(self):
        os.close(self.fd)


class MediaRecorder:
    """Records, as motion writes them, the queue entries in BASE/queue (in order) and
    every frame of BASE/CameraN/DATE/NN/, hard-linked into MIRROR/CameraN/DATE/NN/.
    So the frames can be checked even when strix, running alongside, has already moved
    or renamed them; motion writes an event's last frame at least event_gap seconds
    before it touches the queue entry that lets strix at them."""

    LEVELS = (re.compile(r"Camera\d+\Z"), re.compile(r"\d{4}-\d{2}-\d{2}\Z"),
              re.compile(r"\d+\Z"))

    def __init__(self, base, mirror):
        self.base, self.mirror = base, mirror
        self.entries = []  # queue entry names, in the order they appeared
        self.overflowed = False
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.inotify = Inotify()
        self.watches = {}  # wd -> path relative to base ("" is base itself)
        self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def __enter__(self):
        os.makedirs(self.mirror, exist_ok=True)
        self._watch("queue")
        self._watch("")
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(10)
        self.inotify.close()

    def snapshot(self):
        with self.lock:
            return list(self.entries)

    def _run(self):
        while not self.stopping.is_set():
            try:
                for wd, mask, name in self.inotify.read(0.1):
                    self._handle(wd, mask, name)
            except Exception as error:  # recorded, reported by the test
                self.errors.append(repr(error))

    def _handle(self, wd, mask, name):
        if mask & Inotify.Q_OVERFLOW:
            self.overflowed = True
            return
        folder = self.watches.get(wd)
        if folder is None or not name:
            return
        relative = os.path.join(folder, name) if folder else name
        if folder == "queue":
            self._entry(name)
        elif mask & Inotify.ISDIR:
            self._watch(relative)
        else:
            self._link(relative)

    def _depth(self, relative):
        return 0 if not relative else len(relative.split(os.sep))

    def _watch(self, relative):
        """Watch a folder (and catch up on what it already holds)."""
        parts = relative.split(os.sep) if relative else []
        if relative != "queue" and not all(level.match(part)
                                           for level, part in zip(self.LEVELS, parts)):
            return  # strix's own folders (.strix, renamed events, debug/) are not motion's
        if len(parts) > len(self.LEVELS):
            return
        path = os.path.join(self.base, relative)
        mask = Inotify.CREATE | Inotify.MOVED_TO | Inotify.CLOSE_WRITE | Inotify.ATTRIB
        try:
            self.watches[self.inotify.add(path, mask)] = relative
            names = sorted(os.listdir(path))
        except FileNotFoundError:
            return
        for name in names:
            child = os.path.join(relative, name) if relative else name
            if relative == "queue":
                self._entry(name)
            elif os.path.isdir(os.path.join(self.base, child)):
                self._watch(child)
            else:
                self._link(child)

    def _entry(self, name):
        with self.lock:
            if name not in self.entries:
                self.entries.append(name)

    def _link(self, relative):
        if self._depth(relative) != len(self.LEVELS) + 1:
            return
        target = os.path.join(self.mirror, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(os.path.join(self.base, relative), target)


# motion ######################################################################

class MotionSetup:
    """The files of one motion setup under `root`: motion.conf, cameraN.conf, BASE."""

    def __init__(self, root, camera_url, camera_ids=CAMERA_IDS):
        self.root = str(root)
        self.base = os.path.join(self.root, "media")
        self.queue = os.path.join(self.base, "queue")
        self.config = os.path.join(self.root, "motion.conf")
        self.log = os.path.join(self.root, "motion.log")
        self.output = os.path.join(self.root, "motion.out")
        self.camera_ids = tuple(camera_ids)
        self.cameras = [f"Camera{camera_id}" for camera_id in self.camera_ids]
        self.webcontrol_port = free_port()
        self.stream_ports = {camera_id: free_port() for camera_id in self.camera_ids}
        self.camera_url = camera_url

    def write(self):
        os.makedirs(self.queue)  # motion's on_event_end touches into it: it must exist
        lines = [
            "daemon off",
            "setup_mode off",
            f"log_file {self.log}",
            "log_level 6",
            f"pid_file {self.root}/motion.pid",
            f"webcontrol_port {self.webcontrol_port}",
            "webcontrol_localhost on",
            "webcontrol_parms 0",
            "webcontrol_interface 1",
        ]
        for camera_id in self.camera_ids:
            path = os.path.join(self.root, f"camera{camera_id}.conf")
            with open(path, "w") as file:
                file.write("\n".join([
                    f"camera_id {camera_id}",
                    f"camera_name Camera{camera_id}",
                    f"netcam_url {self.camera_url}",
                    f"width {WIDTH}",
                    f"height {HEIGHT}",
                    f"framerate {FPS}",
                    f"target_dir {self.base}/Camera{camera_id}",
                    f"stream_port {self.stream_ports[camera_id]}",
                    "stream_localhost on",
                    f"threshold {THRESHOLD}",
                    "noise_tune off",
                    f"noise_level {NOISE_LEVEL}",
                    "minimum_motion_frames 1",
                    f"event_gap {EVENT_GAP}",
                    "pre_capture 1",
                    "post_capture 2",
                    "picture_output on",
                    "picture_output_motion on",
                    "picture_exif %D-%N-%i-%J-%K-%L",
                    "picture_filename %Y-%m-%d/%v/%H-%M-%S-%q",
                    "movie_output off",
                    f"on_event_end /usr/bin/touch {self.base}/queue/Camera%t_%Y-%m-%d_%v",
                ]) + "\n")
            lines.append(f"camera {path}")
        with open(self.config, "w") as file:
            file.write("\n".join(lines) + "\n")
        return self

    def webcontrol(self, path):
        url = f"http://127.0.0.1:{self.webcontrol_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode(errors="replace")


class MotionProcess:
    """`motion -n -m -c motion.conf` in its own process group: in the foreground, with
    detection paused until enable_detection()."""

    def __init__(self, setup):
        self.setup = setup
        self.process = None
        self.started = None
        self.returncode = None

    def __enter__(self):
        self.started = time.monotonic()
        with open(self.setup.output, "wb") as output:
            self.process = subprocess.Popen(
                [MOTION, "-n", "-m", "-c", self.setup.config], stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc):
        self.stop()
        stop_process(self.process)  # and what motion left running in its group

    def alive(self):
        return self.process.poll() is None

    def enable_detection(self):
        answer = self.setup.webcontrol("/0/detection/start")
        assert "Done" in answer, f"detection/start answered {answer!r}"
        status = self.setup.webcontrol("/0/detection/status")
        assert status.count("ACTIVE") == len(self.setup.camera_ids), status

    def stop(self):
        """SIGTERM (motion closes an open event and runs on_event_end) and wait; the
        on_event_end commands it started may still be running."""
        if self.process is not None and self.returncode is None:
            self.returncode = stop_process(self.process, timeout=20, leftovers=False)
        return self.returncode

    def diagnostics(self):
        return (f"--- motion output\n{tail(self.setup.output, 10)}"
                f"--- motion.log\n{tail(self.setup.log)}")


# strix (phase 2) #############################################################

class StrixProcess:
    """`python3 strix.py -c strix.cfg` serving the media of a MotionSetup."""

    def __init__(self, setup):
        self.setup = setup
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(setup.root, "strix.cfg")
        self.output = os.path.join(setup.root, "strix.out")
        self.process = None

    def __enter__(self):
        with open(self.config, "w") as file:
            file.write(f"[strix]\nmotion_config = {self.setup.config}\n"
                       f"host = 127.0.0.1\nport = {self.port}\nmin_free_percent = 0\n")
        check = subprocess.run([sys.executable, os.path.join(HERE, "strix.py"), "--check",
                                "-c", self.config], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, f"strix --check refused motion.conf:\n{check.stdout}"
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "strix.py"), "-c", self.config],
                cwd=HERE, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True)
        ready = wait_until(self._ready, 20)
        assert ready, f"strix did not answer on {self.url}\n{self.diagnostics()}"
        return self

    def __exit__(self, *exc):
        stop_process(self.process, timeout=15)

    def _ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"strix exited with {self.process.returncode}\n"
                                 + self.diagnostics())
        with contextlib.suppress(OSError):
            return self.get_json("/api/cameras/list")

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()

    def get_json(self, path):
        return json.loads(self.get(path)[2])

    def diagnostics(self):
        return f"--- strix output\n{tail(self.output)}"


# The shared run ##############################################################

class MotionRun:
    """What one run of motion produced: the setup, the queue entries in the order they
    appeared, and each event's frames as recorded (MIRROR/CameraN/DATE/NN/)."""

    def __init__(self, setup, entries, mirror, strix, motion, started, stopped):
        self.setup, self.entries, self.mirror = setup, entries, mirror
        self.base = setup.base
        self.strix, self.motion = strix, motion
        self.started, self.stopped = started, stopped  # wall-clock time.time()

    def entry_parts(self, entry):
        """(camera, date, number) of a queue entry."""
        match = QUEUE_RE.match(entry)
        assert match, f"queue entry {entry!r} is not Camera<N>_<YYYY-MM-DD>_<NN>"
        return match.group(1), match.group(3), match.group(4)

    def recorded_folder(self, entry):
        camera, date, number = self.entry_parts(entry)
        return os.path.join(self.mirror, camera, date, number)

    def frames(self, entry, debug=False):
        """The recorded frame names of an event, sorted; debug: the m frames."""
        folder = self.recorded_folder(entry)
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        return [name for name in names
                if FRAME_RE.match(name) and name.endswith("m.jpg") == debug]

    def expected_event(self, entry):
        """The event strix should make of a queue entry: camera, start and end
        ("YYYY-MM-DD HH:MM:SS"), from the first and last normal frame."""
        camera, date, _number = self.entry_parts(entry)
        frames = self.frames(entry) or self.frames(entry, debug=True)
        first, last = frames[0], frames[-1]
        return (camera, f"{date} {first[0:2]}:{first[3:5]}:{first[6:8]}",
                f"{date} {last[0:2]}:{last[3:5]}:{last[6:8]}")

    def diagnostics(self):
        text = f"queue entries: {self.entries}\n{self.motion.diagnostics()}"
        return text + self.strix.diagnostics()


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory):
    """One run of the real motion daemon shared by the tests of this module: the
    synthetic camera, motion.conf for CAMERA_IDS, motion until every camera has
    recorded EVENTS_PER_CAMERA events, then SIGTERM. strix runs alongside from before
    motion starts until the module's tests are done."""
    assert os.access(MOTION, os.X_OK), "motion is not installed: run ./install.sh --test"
    root = tmp_path_factory.mktemp("motion")
    with contextlib.ExitStack() as stack:
        camera = stack.enter_context(SyntheticCamera())
        setup = MotionSetup(root, camera.url).write()
        recorder = stack.enter_context(MediaRecorder(setup.base, str(root / "recorded")))
        strix = stack.enter_context(StrixProcess(setup))
        started = time.time()
        motion = stack.enter_context(MotionProcess(setup))

        # Detection on once motion is up and both cameras see real frames.
        viewing = wait_until(lambda: not motion.alive() or (
            time.monotonic() - motion.started >= DETECTION_AFTER
            and camera.viewers(FPS) >= len(setup.camera_ids)), 20)
        assert motion.alive() and viewing, \
            f"motion did not start reading the camera\n{motion.diagnostics()}"
        motion.enable_detection()

        def enough():
            if not motion.alive():
                raise AssertionError(f"motion exited early\n{motion.diagnostics()}")
            entries = recorder.snapshot()
            return all(sum(entry.startswith(f"{camera_name}_") for entry in entries)
                       >= EVENTS_PER_CAMERA for camera_name in setup.cameras)

        done = wait_until(enough, EVENTS_TIMEOUT - (time.monotonic() - motion.started), 0.5)
        assert done, (f"motion recorded too few events in {EVENTS_TIMEOUT:.0f} s "
                      f"({camera.passes_until(camera.clock())} passes of the box)\n"
                      f"queue: {recorder.snapshot()}\n{motion.diagnostics()}")

        returncode = motion.stop()
        assert returncode == 0, f"motion exited with {returncode}\n{motion.diagnostics()}"
        stopped = time.time()
        # motion has exited; give a last on_event_end touch time to land.
        settled = [len(recorder.snapshot()), time.monotonic()]

        def quiet():
            count = len(recorder.snapshot())
            if count != settled[0]:
                settled[:] = [count, time.monotonic()]
            return time.monotonic() - settled[1] >= 1.0

        wait_until(quiet, 10, 0.1)
        time.sleep(0.3)  # the recorder's last inotify read
        assert not recorder.errors, recorder.errors
        assert not recorder.overflowed, "inotify queue overflowed: frames may be missing"
        yield MotionRun(setup, recorder.snapshot(), recorder.mirror, strix, motion,
                        started, stopped)


# Phase 1: what motion writes ##################################################

def test_motion_records_events_as_strix_expects(motion_run):
    run = motion_run
    entries = run.entries
    why = run.diagnostics()
    for camera in run.setup.cameras:
        assert sum(entry.startswith(camera + "_") for entry in entries) \
            >= EVENTS_PER_CAMERA, why

    started_day = time.strftime("%Y-%m-%d", time.localtime(run.started - 1))
    stopped_day = time.strftime("%Y-%m-%d", time.localtime(run.stopped + 1))
    numbers = {camera: [] for camera in run.setup.cameras}
    for entry in entries:
        camera, date, number = run.entry_parts(entry)
        assert camera in run.setup.cameras, entry
        assert started_day <= date <= stopped_day, entry
        assert re.match(r"(0[1-9]|[1-9]\d+)\Z", number), \
            f"{entry}: motion pads %v to two digits"
        numbers[camera].append(int(number))

        frames, debug = run.frames(entry), run.frames(entry, debug=True)
        assert frames, f"{entry}: no frames recorded in {run.recorded_folder(entry)}\n{why}"
        assert debug, f"{entry}: no debug (m) frames\n{why}"
        assert set(name[:-5] for name in debug) <= set(name[:-4] for name in frames), \
            f"{entry}: a debug frame without its normal twin"
        for name in frames + debug:
            hour, minute, second, number_in_second, _m = FRAME_RE.match(name).groups()
            assert int(hour) < 24 and int(minute) < 60 and int(second) < 60, name
            assert int(number_in_second) < 2 * FPS, name
        first = frames[0]
        first_time = time.mktime(time.strptime(f"{date} {first[:8]}", "%Y-%m-%d %H-%M-%S"))
        assert run.started - 2 <= first_time <= run.stopped + 2, \
            f"{entry}: first frame {first} is outside the run (time zone?)"

        changes = []
        for name in frames + debug:
            path = os.path.join(run.recorded_folder(entry), name)
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.size == (WIDTH, HEIGHT), name
                description = image.getexif().get(270)
            match = EXIF_RE.match(description or "")
            assert match, f"{entry}/{name}: EXIF ImageDescription {description!r} is not " \
                "changed-noise-width-height-x-y"
            changed, noise, width, height, x, y = map(int, match.groups())
            assert noise == NOISE_LEVEL, description
            assert width <= WIDTH and height <= HEIGHT and x < WIDTH and y < HEIGHT, \
                description
            changes.append((changed, width, height))
        # The box was seen: a motion area of about its size, not the whole frame
        # (motion -m avoids the spurious whole-frame event at startup).
        assert any(changed >= THRESHOLD and width >= BOX // 2 for changed, width, _
                   in changes), f"{entry}: no frame shows the box's motion: {changes}"
        assert not any(width > WIDTH * 0.9 and height > HEIGHT * 0.9
                       for _, width, height in changes), \
            f"{entry}: a whole-frame motion area: {changes}"

    # Each camera numbers its events 01, 02, ... in the order they end.
    for camera, seen in numbers.items():
        assert seen == list(range(1, len(seen) + 1)), f"{camera}: event numbers {seen}"
    # Every event folder motion made has its queue entry.
    folders = {f"{camera}_{date}_{number}"
               for camera in os.listdir(run.mirror)
               for date in os.listdir(os.path.join(run.mirror, camera))
               for number in os.listdir(os.path.join(run.mirror, camera, date))}
    assert folders == set(entries), why


# Phase 2: strix turns them into events ########################################

def ffprobe(path):
    """(codec, duration in s) of a video file's first video stream."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name:format=duration", "-of", "json", path],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"ffprobe {path}: {result.stderr}"
    info = json.loads(result.stdout)
    return info["streams"][0]["codec_name"], float(info["format"]["duration"])


def test_motion_events_become_strix_events(motion_run, tmp_path):
    run, strix = motion_run, motion_run.strix
    cameras = ",".join(run.setup.cameras)
    expected = {}
    for entry in run.entries:
        camera, start, end = run.expected_event(entry)
        expected[(camera, start)] = end

    listed = {}

    def all_listed():
        answer = strix.get_json(f"/api/events/{cameras}?limit=0")
        listed.clear()
        for camera, events in answer["events"].items():
            for event in events:
                listed[(camera, event["start"])] = event
        return set(expected) <= set(listed)

    # motion has stopped and its last entry appeared over a second ago: strix lists an
    # event within about two seconds of its entry (10 s leaves room for a busy machine).
    assert wait_until(all_listed, 10, 0.5), (
        f"strix does not list every event: missing {sorted(set(expected) - set(listed))}\n"
        f"listed {sorted(listed)}\n{run.diagnostics()}")
    assert len(listed) == len(expected), f"strix lists more events than motion made: " \
        f"{sorted(set(listed) - set(expected))}"
    assert os.listdir(run.setup.queue) == [], "strix left queue entries behind"

    for (camera, start), end in sorted(expected.items()):
        event = listed[(camera, start)]
        assert event["end"] == end, (camera, start, event)
        length = (time.mktime(time.strptime(end, "%Y-%m-%d %H:%M:%S"))
                  - time.mktime(time.strptime(start, "%Y-%m-%d %H:%M:%S")))
        for kind in ("video", "debug_video"):
            url = event[kind]
            assert url.startswith(f"/motion/{camera}/"), url
            status, content_type, body = strix.get(url)
            assert status == 200 and content_type.startswith("video/mp4"), (url, content_type)
            path = tmp_path / f"{camera}-{start[-8:].replace(':', '-')}-{kind}.m4v"
            path.write_bytes(body)
            codec, duration = ffprobe(str(path))
            assert codec == "h264", (url, codec)
            assert abs(duration - length) <= 1.5, \
                f"{url}: lasts {duration:.2f} s, the event {length:.0f} s"
        status, content_type, body = strix.get(event["thumbnail"])
        assert status == 200 and content_type.startswith("image/jpeg"), event["thumbnail"]
        with Image.open(io.BytesIO(body)) as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.width > 0
