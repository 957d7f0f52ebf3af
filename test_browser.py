"""Tests of the web UI: the pages and their changes through WebTest, then the whole UI in
headless Chromium over a real strix serving a generated media folder."""

import concurrent.futures
import http.server
import io
import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright
from webtest import TestApp

import strix
from test_strix import (Media, day, free_port, jpeg, strix_command, wait_for_deletes,
                        write_motion_conf)
from test_strix import media, tiny_video  # noqa: F401 (fixtures)


def event_url(camera, date, name):
    return f"/event/{camera}/{date}/{name}"


def three_cameras(tmp_path, events=7):
    """A media folder with three cameras, the first two with `events` events yesterday."""
    media = Media(tmp_path, cameras=((1, 8081, "Front door"), (2, 8082, "Garden"),
                                     (3, 8083, "Garage")))
    for camera in ("Camera1", "Camera2"):
        for hour in range(events):
            media.add_event(camera, day(1), f"{hour:02d}-00-00", frames=1)
    return media


# Pages #######################################################################

def test_home_page_shows_newest_thumbnails_escaped(tmp_path):
    media = Media(tmp_path, cameras=((1, 8081, "<script>alert(1)</script>"),))
    for hour in range(7):
        media.add_event("Camera1", day(1), f"{hour:02d}-00-00", frames=1)
    app, _ = media.app()
    for url in ("/", "/camera/Camera1", event_url("Camera1", day(1), "03-00-00")):
        page = app.get(url)
        assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text, url
    page = app.get("/")
    thumbnails = page.html.select(".strip img")
    assert [img["src"].split("/")[-2] for img in thumbnails] == \
        [f"{hour:02d}-00-00" for hour in (6, 5, 4, 3, 2)]
    assert [a["href"] for a in page.html.select(".strip a.thumb")][0] == \
        event_url("Camera1", day(1), "06-00-00")
    assert all(img["alt"] and img.parent["title"] for img in thumbnails)
    assert page.html.select_one(".stream img")["alt"] == \
        "Live view of <script>alert(1)</script>"


def test_unknown_page_is_a_404_page(media):
    app, _ = media.app()
    page = app.get("/nowhere", status=404)
    assert page.content_type == "text/html" and "404" in page.text


def test_home_page_pages_each_camera_and_keeps_the_others(tmp_path):
    app, _ = three_cameras(tmp_path, events=12).app()
    page = app.get("/?Camera1=5&Camera2=10")
    strips = page.html.select(".strip")
    assert [strip["data-offset"] for strip in strips] == ["5", "10", "0"]
    first, second = strips[0], strips[1]
    assert [a["href"].split("/")[-1] for a in first.select("a.thumb")] == \
        ["06-00-00", "05-00-00", "04-00-00", "03-00-00", "02-00-00"]
    assert first.select_one("a[rel=prev]")["href"] == "/?Camera2=10"
    assert first.select_one("a[rel=next]")["href"] == "/?Camera1=10&Camera2=10"
    assert first.select_one(".count").text == "6–10 of 12"
    assert len(second.select("a.thumb")) == 2 and not second.select("a[rel=next]")
    assert strips[2].select_one(".empty").text == "No events yet."
    fragment = app.get("/strip/Camera2?Camera1=5&Camera2=5")
    assert fragment.text.startswith('<div class="strip" id="strip-Camera2"')
    assert "<html" not in fragment.text
    assert fragment.html.select_one("a[rel=next]")["href"] == "/?Camera1=5&Camera2=10"


def test_home_page_refreshes_the_newest_events_only(tmp_path):
    app, _ = three_cameras(tmp_path).app()
    page = app.get("/")
    assert page.html.select_one(".cameras")["data-refresh"] == "30"
    assert 'content="30"' in page.html.select_one("noscript").decode_contents()
    assert not app.get("/?Camera2=5").html.select("noscript")


def test_stream_url_follows_the_host_the_browser_used(tmp_path):
    media = three_cameras(tmp_path)
    app, _ = media.app()
    page = app.get("/", headers={"Host": "cams.home:8000"})
    assert [img["src"] for img in page.html.select(".stream img")] == \
        ["//cams.home:8081/", "//cams.home:8082/", "//cams.home:8083/"]
    assert "img-src 'self' cams.home:8081 cams.home:8082 cams.home:8083;" in \
        page.headers["Content-Security-Policy"]
    page = app.get("/", headers={"Host": "[fd00::2]:8000"})
    assert page.html.select_one(".stream img")["src"] == "//[fd00::2]:8081/"
    for template, expected in (("/cam/{id}/", "/cam/Camera1/"),
                               ("//{host}:8080/{camera_id}/stream", "//h:8080/1/stream"),
                               ("https://{host}/live/{port}", "https://h/live/8081")):
        media.config.stream_url = template
        page = media.app()[0].get("/", headers={"Host": "h"})
        assert page.html.select_one(".stream img")["src"] == expected


@pytest.mark.parametrize("value, ok", [
    ("//{host}:{port}/", True), ("/cam/{id}/", True), ("//{host}:8080/{camera_id}/stream", True),
    ("//{host}:{prot}/", False), ("//{host}:{port/", False), ("//{host.__class__}/", False),
])
def test_stream_url_option_is_checked(tmp_path, value, ok):
    path = tmp_path / "strix.cfg"
    path.write_text(f"[strix]\nstream_url = {value}\n")
    if ok:
        assert strix.read_config(str(path)).stream_url == value
    else:
        with pytest.raises(strix.ConfigError) as error:
            strix.read_config(str(path))
        assert "line 2: stream_url" in str(error.value) and "{camera_id}" in str(error.value)


def test_home_page_weighs_under_30_kb_and_loads_nothing_from_elsewhere(tmp_path):
    app, _ = three_cameras(tmp_path).app()
    page = app.get("/")
    weight = len(page.body) + sum(len(app.get(url).body) for url in
                                  ("/static/style.css", "/static/strix.js"))
    assert weight < 30 * 1024, weight
    linked = [tag.get("src") or tag.get("href") for tag in page.html.select("[src], [href]")]
    streams = {img["src"] for img in page.html.select(".stream img")}
    assert all(url[0] in "/#" and not url.startswith("//") or url in streams
               for url in linked), linked


def test_camera_page_groups_a_bounded_page_by_day(media, monkeypatch):
    monkeypatch.setattr(strix, "PAGE_EVENTS", 4)
    for date, hours in ((day(3), (8, 9)), (day(2), (10, 11, 12)), (day(1), (13,))):
        for hour in hours:
            media.add_event("Camera1", date, f"{hour:02d}-00-00", frames=2)
    app, _ = media.app()
    page = app.get("/camera/Camera1")
    assert page.html.title.text == "Front door · strix"
    days = page.html.select(".day")
    assert [section.h2.text for section in days] == \
        [strix.day_title(day(1)), strix.day_title(day(2))]
    assert [a["href"].split("/")[-1] for a in page.html.select(".day a.thumb")] == \
        ["13-00-00", "12-00-00", "11-00-00", "10-00-00"]
    assert all(img["loading"] == "lazy" for img in page.html.select(".day img"))
    assert [(a.text.split()[-1], a.get("aria-current")) for a in page.html.select(".days a")] == \
        [("1", "true"), ("3", None), ("2", None)]
    older = page.html.select_one(".timeline a[rel=next]")["href"]
    assert older == "/camera/Camera1?offset=4"
    page = app.get(older)
    assert [a["href"].split("/")[-1] for a in page.html.select(".day a.thumb")] == \
        ["09-00-00", "08-00-00"]
    assert page.html.select_one(".timeline a[rel=prev]")["href"] == "/camera/Camera1?offset=0"
    jump = page.html.select(".days a")[1]["href"]
    assert [a["href"].split("/")[-1] for a in app.get(jump).html.select(".day a.thumb")] == \
        ["12-00-00", "11-00-00", "10-00-00", "09-00-00"]


def test_camera_page_chart_counts_events_per_hour_and_links_them(media):
    for name in ("10-05-00", "10-20-00", "10-59-59", "14-00-00"):
        media.add_event("Camera1", day(1), name, frames=1)
    media.add_event("Camera1", day(8), "10-00-00", frames=1)  # not in the last 7 days
    app, _ = media.app()
    page = app.get("/camera/Camera1")
    cells = page.html.select(".heatmap a")
    assert [(a.rect["class"], a.rect.title.text.split(": ")[-1]) for a in cells] == \
        [(["l4"], "3 events"), (["l2"], "1 event")]
    assert [text.text for text in page.html.select(".heatmap .total")] == \
        ["0", "4", "0", "0", "0", "0", "0"]
    hour = app.get(cells[0]["href"])
    assert [a["href"].split("/")[-1] for a in hour.html.select(".day a.thumb")] == \
        ["10-59-59", "10-20-00", "10-05-00"]
    assert hour.html.select_one("input[name=start]")["value"] == f"{day(1)}T10:00:00"
    assert hour.html.select_one("input[name=end]")["value"] == f"{day(1)}T10:59:59"


def test_camera_page_time_filter_takes_the_form_and_the_api_formats(media):
    for name in ("09-00-00", "10-30-00", "12-00-00"):
        media.add_event("Camera1", day(1), name, frames=1)
    app, _ = media.app()
    for query in (f"start={day(1)}T10:00&end={day(1)}T11:00",
                  f"start={day(1)} 10:00:00&end={day(1)} 11:00:00", f"start={day(1)}T10:00:00&"
                  f"end={day(1)}T11:00:00"):
        page = app.get(f"/camera/Camera1?{query}")
        assert [a["href"][-8:] for a in page.html.select(".day a.thumb")] == ["10-30-00"], query
    assert len(app.get("/camera/Camera1?start=&end=").html.select(".day a.thumb")) == 3
    page = app.get("/camera/Camera1?start=2001-01-01T00:00&end=2001-01-02T00:00")
    assert page.html.select_one(".empty").text == "No events in this time range."
    page = app.get("/camera/Camera1?start=yesterday", status=400)
    assert page.content_type == "text/html" and "start must be YYYY-MM-DD HH:MM:SS" in page.text


@pytest.mark.parametrize("url, status", [
    ("/camera/Camera9", 404), ("/camera/%3Cscript%3E", 404), ("/camera/Camera1?offset=-1", 400),
    ("/camera/Camera1?end=2026-02-30T10:00", 400), ("/?Camera1=many", 400),
    ("/strip/Camera9", 404), ("/event/Camera1/2026-13-45/10-00-00", 404),
    ("/event/Camera1/yesterday/10-00-00", 404), ("/event/Camera1/{day}/25-00-00", 404),
    ("/event/Camera1/{day}/10-00-00.999", 404), ("/event/Camera1/{day}/..", 404),
    ("/event/Camera9/{day}/10-00-00", 404), ("/event/Camera1/{day}/10-00-01", 404),
    ("/event/Camera1/{day}/10-00-00/keep", 405), ("/api/event/Camera1/{day}/10-00-00", 405),
])
def test_bad_page_urls_are_client_errors(media, url, status):
    media.add_event("Camera1", day(1), "10-00-00", frames=1)
    app, _ = media.app()
    page = app.get(url.format(day=day(1)), status=status)
    assert page.content_type == ("application/json" if "/api/" in url else "text/html")


def test_pages_stay_fast_with_50000_events(media):
    cache = media.cache()
    dates = [day(back) for back in range(1, 51)]
    with cache.lock:
        for date in dates:  # 1,000 events a day, as the cache holds them
            cache.days["Camera1"][date] = strix.Day.from_rows(date, 0, [
                (second << 8, 4, strix.HAS_VIDEO | strix.HAS_THUMBNAIL)
                for second in range(0, 86400, 86)][:1000])
        cache.dates["Camera1"] = sorted(dates)
    assert cache.count("Camera1") == 50000
    app, _ = media.app(cache)
    event = cache.query("Camera1", 0, strix.local_now(), 25000, 1)[0]
    for url in ("/", "/camera/Camera1", "/camera/Camera1?offset=40000",
                f"/camera/Camera1?start={dates[20]} 10:00:00&end={dates[20]} 10:59:59",
                event_url(event.camera, event.date, event.name)):
        started = time.perf_counter()
        page = app.get(url, expect_errors=True)
        seconds = time.perf_counter() - started
        assert page.status_int == 200 and seconds < 0.25, (url, seconds)
        assert len(page.html.select("a.thumb")) <= strix.PAGE_EVENTS


def test_event_page_shows_video_details_neighbours_and_frames(media, tiny_video):
    media.add_event("Camera1", day(2), "23-00-00", frames=1)
    media.add_event("Camera1", day(1), "10-00-00", frames=4, video=tiny_video)
    media.add_event("Camera1", day(1), "11-00-00", frames=1)
    app, _ = media.app()
    url = event_url("Camera1", day(1), "10-00-00")
    page = app.get(url)
    assert page.html.title.text == f"Front door, {page.html.h1.span.text} · strix"
    video = page.html.select_one("video")
    assert video["src"] == f"/motion/Camera1/{day(1)}/10-00-00/video.m4v"
    assert video.has_attr("controls") and video.has_attr("playsinline")
    assert app.get(video["src"], headers={"Range": "bytes=0-9"}, status=206).body == \
        tiny_video[:10]
    details = dict(zip([dt.text for dt in page.html.select("dt")],
                       [dd.text for dd in page.html.select("dd")]))
    assert details == {"Start": strix.event_title(strix.midnight(day(1)) + 36000),
                       "End": strix.event_title(strix.midnight(day(1)) + 36003),
                       "Duration": "3 s", "Frames": "4"}
    assert page.html.select_one("a[rel=prev]")["href"] == event_url("Camera1", day(1),
                                                                    "11-00-00")
    assert page.html.select_one("a[rel=next]")["href"] == event_url("Camera1", day(2),
                                                                    "23-00-00")
    download = page.html.select_one("a[download]")["href"]
    assert app.get(download).headers["Content-Disposition"] == \
        f'attachment; filename="Camera1_{day(1)}_10-00-00_video.m4v"'
    frames = page.html.select(".frames img")
    assert [img["alt"] for img in frames] == [f"Frame {n + 1}, 10:00:0{n}" for n in range(4)]
    assert all(img["loading"] == "lazy" for img in frames)
    toggle = page.html.select_one("#debug-toggle")
    assert toggle["href"] == url + "?debug=1"
    debug = app.get(toggle["href"]).html
    assert debug.select_one("video")["src"].endswith("/10-00-00/debug/video.m4v")
    assert debug.select_one("#debug-toggle")["href"] == url


@pytest.mark.parametrize("seconds, said", [(0, "0 s"), (45, "45 s"), (125, "2 min 05 s"),
                                           (3720, "1 h 02 min")])
def test_durations_read_as_people_say_them(seconds, said):
    assert strix.duration(seconds) == said


def test_event_without_video_shows_its_frames_as_a_slideshow(media):
    media.add_event("Camera1", day(1), "10-00-00", frames=3)
    app, _ = media.app()
    page = app.get(event_url("Camera1", day(1), "10-00-00")).html
    assert not page.select("video") and not page.select("#debug-toggle, a[download]")
    slideshow = page.select_one(".slideshow")
    assert slideshow["data-frames"].split() == ["10-00-00-00.jpg", "10-00-01-00.jpg",
                                                "10-00-02-00.jpg"]
    assert slideshow.img["src"].endswith("/10-00-00/10-00-00-00.jpg")


def test_event_page_frame_grid_is_bounded(media):
    event_dir = media.add_event("Camera1", day(1), "10-00-00", frames=1)
    for number in range(299):
        (event_dir / f"10-{1 + number // 60:02d}-{number % 60:02d}-00.jpg").write_bytes(jpeg())
    app, _ = media.app()
    page = app.get(event_url("Camera1", day(1), "10-00-00")).html
    assert len(page.select(".frames img")) == 100
    assert page.select_one("#frames-title").text == "Frames (100 of 300: one in 3)"
    assert len(page.select_one(".slideshow")["data-frames"].split()) == 300


# Keep and delete #############################################################

def page_token(app, url):
    return app.get(url).html.select_one("input[name=token]")["value"]


def test_keep_and_unkeep_from_the_event_page(media):
    event_dir = media.add_event("Camera1", day(1), "10-00-00", frames=1)
    app, cache = media.app()
    url = event_url("Camera1", day(1), "10-00-00")
    page = app.get(url)
    form = page.forms[0]
    assert form.action == url + "/keep" and form.method.upper() == "POST"
    reply = form.submit()
    assert reply.status_int == 303 and reply.location.endswith(url)
    page = reply.follow()
    assert page.html.select_one(".page-head .kept").text == "Kept"
    assert cache.get("Camera1", day(1), "10-00-00").saved
    assert app.get("/api/events/Camera1").json["events"]["Camera1"][0]["saved"] is True
    assert (event_dir / ".saved").exists()
    assert app.get("/").html.select_one(".thumb .kept").text == "Kept"
    page = page.forms[0].submit().follow()
    assert not page.html.select(".page-head .kept")
    assert not (event_dir / ".saved").exists()
    assert app.get("/api/events/Camera1").json["events"]["Camera1"][0]["saved"] is False


def test_delete_asks_first_then_goes_through_the_delete_queue(media):
    media.add_event("Camera1", day(1), "10-00-00", frames=1, saved=True)
    media.add_event("Camera1", day(1), "11-00-00", frames=1)
    app, cache = media.app()
    url = event_url("Camera1", day(1), "10-00-00")
    page = app.get(url)
    confirm = page.html.select_one("details.delete")
    assert confirm.summary.text == "Delete…" and "for good" in confirm.form.text
    reply = page.forms[1].submit()
    assert reply.status_int == 303
    page = reply.follow()
    assert page.html.select_one(".notice").text == \
        f"Deleted the event of {strix.event_title(strix.midnight(day(1)) + 36000)}."
    assert [a["href"][-8:] for a in page.html.select(".day a.thumb")] == ["11-00-00"]
    assert cache.get("Camera1", day(1), "10-00-00") is None
    assert len(app.get("/api/events/Camera1").json["events"]["Camera1"]) == 1
    assert not (media.base / "Camera1" / day(1) / "10-00-00").exists()
    wait_for_deletes()
    assert os.listdir(media.base / "delete_queue") == []
    app.get(url, status=404)


def test_changes_need_the_token_of_their_own_session(media):
    event_dir = media.add_event("Camera1", day(1), "10-00-00", frames=1)
    app, cache = media.app()
    url = event_url("Camera1", day(1), "10-00-00")
    token = page_token(app, url)
    stranger = TestApp(app.app)
    stranger_token = page_token(stranger, url)
    assert stranger_token != token
    for client, sent in ((app, None), (app, "0" * 32), (app, stranger_token), (stranger, token),
                         (TestApp(app.app), token)):
        params = {"token": sent} if sent else {}
        page = client.post(url + "/keep", params, status=403)
        assert page.content_type == "text/html" and "reload it and try again" in page.text
    assert not cache.get("Camera1", day(1), "10-00-00").saved
    assert not (event_dir / ".saved").exists()
    app.post(url + "/keep", {"token": token}, status=303)
    assert cache.get("Camera1", day(1), "10-00-00").saved


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "http://localhost:8000"}, 403),
    ({"Origin": "null"}, 403),
    ({"Referer": "http://evil.example/page"}, 403),
    ({"Origin": "http://localhost"}, 303),
    ({"Origin": "http://LOCALHOST:80"}, 303),
    ({"Referer": "http://localhost/event/x"}, 303),
    ({}, 303),
])
def test_changes_from_another_site_are_refused(media, headers, status):
    media.add_event("Camera1", day(1), "10-00-00", frames=1)
    app, cache = media.app()
    url = event_url("Camera1", day(1), "10-00-00")
    app.post(url + "/keep", {"token": page_token(app, url)}, headers=headers, status=status)
    assert cache.get("Camera1", day(1), "10-00-00").saved == (status == 303)


def test_api_keeps_unkeeps_and_deletes_with_the_token_header(media):
    event_dir = media.add_event("Camera1", day(1), "10-00-00", frames=1)
    app, cache = media.app()
    url = f"/api/event/Camera1/{day(1)}/10-00-00"
    refused = app.post(url + "/keep", status=403)
    assert refused.content_type == "application/json" and "reload" in refused.json["error"]
    assert app.delete(url, status=403).json["error"]
    token = app.get("/api/token").json
    assert token["header"] == "X-Strix-Token"
    headers = {"X-Strix-Token": token["token"]}
    assert app.post(url + "/keep", headers=headers).json["saved"] is True
    assert (event_dir / ".saved").exists()
    assert app.post(url + "/unkeep", headers=headers).json["saved"] is False
    assert not (event_dir / ".saved").exists()
    reply = app.post(url + "/keep", headers={**headers, "Origin": "http://evil.example"},
                     status=403)
    assert reply.json["error"] == "refused: the request comes from another site"
    deleted = app.delete(url, headers=headers).json["deleted"]
    assert deleted["start"] == f"{day(1)} 10:00:00"
    assert cache.get("Camera1", day(1), "10-00-00") is None
    assert not event_dir.exists()
    assert app.get("/api/events/Camera1").json["events"]["Camera1"] == []
    assert app.delete(url, headers=headers, status=404).json["error"].startswith("no such event")
    assert app.post(f"/api/event/Camera1/{day(1)}/10-00-00/explode", headers=headers,
                    status=404).json["error"]


# In a browser ##################################################################

#: Chromium from Debian (apt-get install chromium); playwright drives it, no browser download.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
#: The widths every page is checked (and photographed) at: a phone and a desktop.
VIEWPORTS = {"phone": {"width": 375, "height": 812}, "desktop": {"width": 1920, "height": 1080}}
#: The generated cameras: (camera_id, name, has a live view).
CAMERAS = ((1, "Front door", True), (2, "Garden", True), (3, "Garage", False))


class LiveView(http.server.ThreadingHTTPServer):
    """A stand-in for motion's MJPEG stream of one camera: a few frames, then it ends."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), LiveViewHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def show(self, number):
        """Show what camera `number` of the demo sees."""
        self.scene, self.colour = strix._demo_scene(number), strix.DEMO_CAMERAS[number - 1][1]
        return self


class LiveViewHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for step in range(strix.DEMO_FRAMES):
            image, _ = strix.draw_demo_frame(self.server.scene, self.server.colour, step,
                                             strix.local_now())
            data = io.BytesIO()
            image.save(data, "JPEG")
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n"
                                 + data.getvalue() + b"\r\n")
            except ConnectionError:  # the page was closed
                return
            time.sleep(0.5)

    def log_message(self, *args):
        pass


def generated_events(rng):
    """(camera, start) of a week of events, more by day than by night, all in the past."""
    now = strix.local_now()
    starts = []
    for number, _, _ in CAMERAS:
        for _ in range((16, 9, 5)[number - 1]):
            moment = now - rng.randrange(600, 7 * 86400)
            if rng.random() < 0.6 and not 7 <= moment // 3600 % 24 <= 21:
                moment += 12 * 3600 * (1 if moment + 12 * 3600 < now - 600 else -1)
            starts.append((f"Camera{number}", moment))
    return starts


def make_event(base, camera, start, codec):
    """One event as motion writes it, then processed by strix's own code (real ffmpeg)."""
    date = time.strftime("%Y-%m-%d", time.gmtime(start))
    number = f"{start % 100000:05d}"
    strix.write_demo_event(os.path.join(base, camera, date, number),
                           strix._demo_scene(int(camera[6:])),
                           strix.DEMO_CAMERAS[int(camera[6:]) - 1][1], start)
    event_date, name, _ = strix.process_event(base, camera, date, number, codec)
    return camera, event_date, name


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real strix (python3 strix.py -c strix.cfg) on a free port over a generated media
    folder, with two live views and one camera whose stream does not answer."""
    folder = tmp_path_factory.mktemp("site")
    base = folder / "media"
    live = [number for number, _, has_live_view in CAMERAS if has_live_view]
    views = dict(zip(live, sorted((LiveView() for _ in live),  # cameras are sorted by port
                                  key=lambda view: view.server_address[1])))
    ports = {number: view.show(number).server_address[1] for number, view in views.items()}
    highest = max(ports.values())
    for number, _, _ in CAMERAS:
        while number not in live and ports.get(number, 0) <= highest:
            ports[number] = free_port()
    write_motion_conf(folder, base, [(number, ports[number], name)
                                     for number, name, _ in CAMERAS])
    rng = random.Random(7)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(make_event, str(base), camera, start, ["libx264", "-preset",
                                                                      "ultrafast"])
                for camera, start in generated_events(rng)]
        events = sorted(job.result() for job in jobs)
    no_video = [event for event in events if event[0] == "Camera2"][0]
    for path in ("video.m4v", "debug/video.m4v"):
        os.remove(os.path.join(base, *no_video, path))
    command, port = strix_command(folder, "motion.conf", keep_days=0, log="strix.log")
    process = subprocess.Popen(command, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                listed = json.load(urllib.request.urlopen(f"{url}/api/events/Camera1,Camera2,"
                                                          "Camera3?limit=0"))["events"]
                if sum(map(len, listed.values())) == len(events):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("strix did not start: " + (folder / "strix.log").read_text())
        yield {"url": url, "base": base, "events": events, "no_video": no_video,
               "streams": {f"127.0.0.1:{port}" for port in ports.values()}}
    finally:
        process.terminate()
        process.wait(10)
        for view in views.values():
            view.shutdown()


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "no Chromium: run ./install.sh --test (bash .ci/run does)"
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(server, browser):
    """visit(path, viewport="desktop") opens a page of the server in a fresh browser; at the
    end, no page may have had a script error or asked any host but strix and the streams."""
    contexts, problems = [], []
    hosts = {urllib.parse.urlsplit(server["url"]).netloc} | server["streams"]

    def check_request(request):
        if urllib.parse.urlsplit(request.url).netloc not in hosts:
            problems.append(f"request to another host: {request.url}")

    def open_page(path, viewport="desktop", clock=False):
        context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme="dark")
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("request", check_request)
        if clock:
            page.clock.install()
        page.goto(server["url"] + path, wait_until="domcontentloaded")
        return page
    yield open_page
    for context in contexts:
        context.close()
    assert problems == []


def listed(server, camera):
    """The events of `camera` as the JSON API lists them now, newest first."""
    reply = urllib.request.urlopen(f"{server['url']}/api/events/{camera}?limit=0")
    return json.load(reply)["events"][camera][::-1]


def page_path(event):
    return urllib.parse.urlsplit(event["images"]).path.replace("/motion/", "/event/", 1)[:-1]


def test_home_page_shows_live_views_and_thumbnails_and_pages_in_place(visit, server):
    page = visit("/")
    expect(page.locator("section.camera h2")).to_have_text(["Front door", "Garden", "Garage"])
    page.wait_for_function("() => [...document.querySelectorAll('.stream img')].slice(0, 2)"
                           ".every(img => img.naturalWidth > 0)")
    expect(page.locator(".stream figcaption").first).to_be_hidden()
    garage = page.locator(".stream").nth(2)
    expect(garage).to_have_class(re.compile("offline"))
    expect(garage.locator("img")).to_be_hidden()
    expect(garage.locator("figcaption")).to_contain_text("GarageLive view unavailable")
    events = listed(server, "Camera1")
    strip = page.locator("#strip-Camera1")
    newest = [page_path(event) for event in events[:5]]
    expect(strip.locator("a.thumb")).to_have_count(5)
    assert [link.get_attribute("href") for link in strip.locator("a.thumb").all()] == newest
    page.wait_for_function("() => [...document.querySelectorAll('#strip-Camera1 img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    assert strip.locator("img").first.get_attribute("alt").startswith("Front door, ")
    page.evaluate("window.notReloaded = true")
    strip.get_by_role("link", name="Older ›").click()
    expect(page).to_have_url(server["url"] + "/?Camera1=5")
    expect(page.locator("#strip-Camera1 .count")).to_have_text(f"6–10 of {len(events)}")
    assert [link.get_attribute("href") for link in
            page.locator("#strip-Camera1 a.thumb").all()] == \
        [page_path(event) for event in events[5:10]]
    assert page.evaluate("document.activeElement.textContent") == "Older ›"
    page.locator("#strip-Camera1").get_by_role("link", name="‹ Newer").click()
    expect(page.locator("#strip-Camera1 .count")).to_have_text(f"1–5 of {len(events)}")
    assert [link.get_attribute("href") for link in
            page.locator("#strip-Camera1 a.thumb").all()] == newest
    assert page.evaluate("window.notReloaded")  # paged in place: the live views went on


def test_event_page_plays_the_video_with_ranges_and_switches_to_debug(visit, server):
    page = visit("/")
    page.locator("#strip-Camera1 a.thumb").nth(1).click()
    expect(page).to_have_url(server["url"] + page_path(listed(server, "Camera1")[1]))
    page.wait_for_function("() => document.querySelector('video').readyState >= 1")
    assert page.evaluate("document.querySelector('video').duration") > 2
    source = page.evaluate("document.querySelector('video').currentSrc")
    whole = page.request.get(source)
    assert whole.status == 200 and whole.headers["content-type"] == "video/mp4"
    part = page.request.get(source, headers={"Range": "bytes=100-1123"})
    assert part.status == 206 and part.body() == whole.body()[100:1124]
    page.evaluate("document.querySelector('video').currentTime = 2")
    page.wait_for_function("() => !document.querySelector('video').seeking")
    page.locator("#debug-toggle").click()
    page.wait_for_function("() => document.querySelector('video').currentSrc"
                           ".endsWith('/debug/video.m4v')"
                           " && document.querySelector('video').readyState >= 1")
    assert page.evaluate("document.querySelector('video').currentTime") == pytest.approx(2)
    expect(page).to_have_url(re.compile(r"\?debug=1$"))
    expect(page.locator("#debug-toggle")).to_have_text("Show the video")
    page.reload()
    assert page.locator("video").get_attribute("src").endswith("/debug/video.m4v")
    page.locator("#debug-toggle").click()
    page.wait_for_function("() => !document.querySelector('video').currentSrc.includes('/debug/')")
    assert page.evaluate("location.search") == ""


def test_event_without_video_plays_its_frames_one_by_one(visit, server):
    camera, date, name = server["no_video"]
    page = visit(f"/event/{camera}/{date}/{name}")
    expect(page.locator("video")).to_have_count(0)
    image = page.locator(".slideshow img")
    first = image.get_attribute("src")
    page.wait_for_function(f"() => document.querySelector('.slideshow img').src.indexOf({first!r}) < 0")
    page.get_by_role("button", name="Pause").click()
    stopped = image.get_attribute("src")
    expect(page.get_by_role("button", name="Play")).to_be_visible()
    page.wait_for_timeout(600)
    assert image.get_attribute("src") == stopped


def test_keep_with_the_keyboard_survives_a_reload(visit, server):
    event = listed(server, "Camera2")[1]
    page = visit(page_path(event))
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Keep (never expire)":
            break
    else:
        pytest.fail("Keep cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    expect(page.locator(".page-head .kept")).to_have_text("Kept")
    page.reload()
    expect(page.locator(".page-head .kept")).to_have_text("Kept")
    expect(page.get_by_role("button", name="Stop keeping")).to_be_visible()
    assert listed(server, "Camera2")[1]["saved"] is True
    folder = urllib.parse.urlsplit(event["images"]).path[len("/motion/"):]
    assert (server["base"] / folder / ".saved").exists()


def test_delete_removes_the_event_from_the_page_the_api_and_the_disk(visit, server):
    event = listed(server, "Camera1")[7]
    page = visit(page_path(event))
    page.get_by_text("Delete…").click()
    page.get_by_role("button", name="Delete for good").click()
    expect(page).to_have_url(re.compile(r"/camera/Camera1\?deleted="))
    expect(page.locator(".notice")).to_have_text(f"Deleted the event of {event['title']}.")
    expect(page.locator("a.thumb").first).to_be_visible()
    expect(page.locator(f'a[href="{page_path(event)}"]')).to_have_count(0)
    assert event["start"] not in [listed_event["start"] for listed_event in
                                  listed(server, "Camera1")]
    folder = urllib.parse.urlsplit(event["images"]).path[len("/motion/"):]
    assert not (server["base"] / folder).exists()
    assert page.goto(server["url"] + page_path(event)).status == 404


def test_camera_page_chart_and_days_lead_to_the_events(visit, server):
    page = visit("/camera/Camera1")
    cell = page.locator(".heatmap a").first
    count = int(re.search(r": (\d+) events?$", cell.get_attribute("aria-label"))[1])
    cell.click()
    expect(page).to_have_url(re.compile(r"\?start=.*&end="))
    expect(page.locator(".day a.thumb")).to_have_count(count)
    start = page.locator("input[name=start]").input_value()
    end = page.locator("input[name=end]").input_value()
    assert start.replace("T", "+") in page.url
    page.get_by_role("link", name="Clear").click()
    page.get_by_text("Filter by time").click()
    page.locator("input[name=start]").fill(start)
    page.locator("input[name=end]").fill(end)
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".filter summary")).to_contain_text(start.replace("T", " "))
    expect(page.locator(".day a.thumb")).to_have_count(count)
    page.get_by_role("link", name="Clear").click()
    days = page.locator(".days a")
    second_day = days.nth(1).text_content().split()
    days.nth(1).click()
    expect(page.locator(".days a[aria-current]")).to_have_text(days.nth(1).text_content())
    expect(page.locator(".day h2").first).to_contain_text(" ".join(second_day[:3]))


def test_pages_fit_a_phone_and_a_desktop(visit, server):
    """At 375 and 1920 px wide: a title, no sideways scrolling, an alt text on every image.
    With STRIX_SCREENSHOTS=docs/screenshots, each page is photographed for README.md."""
    event = page_path(listed(server, "Camera1")[0])
    folder = os.environ.get("STRIX_SCREENSHOTS")
    for viewport, size in VIEWPORTS.items():
        for name, path in (("home", "/"), ("camera", "/camera/Camera1"), ("event", event)):
            page = visit(path, viewport)
            page.wait_for_function("() => [...document.images].filter(img => img.loading != 'lazy'"
                                   " && !img.closest('.offline')).every(img => img.complete)"
                                   " && [...document.querySelectorAll('video')].every("
                                   "video => video.readyState >= 2 && video.networkState != 2)")
            assert page.title().endswith(" · strix"), path
            assert page.evaluate("document.documentElement.scrollWidth") <= size["width"], path
            assert page.evaluate("() => [...document.images].filter(img => !img.alt"
                                 " && !img.closest('.brand')).length") == 0, path
            if folder:  # a moment into the video, as a person would see it
                page.evaluate("() => document.querySelectorAll('video')"
                              ".forEach(video => { video.currentTime = 1.5; })")
                page.wait_for_function("() => [...document.querySelectorAll('video')]"
                                       ".every(video => !video.seeking)")
                page.wait_for_timeout(1000)
                page.screenshot(path=os.path.join(folder, f"{name}-{viewport}.png"))


def test_home_page_shows_a_new_event_within_30_seconds(visit, server):
    page = visit("/", clock=True)
    before = len(listed(server, "Camera1"))
    expect(page.locator("#strip-Camera1 .count")).to_have_text(f"1–5 of {before}")
    start = strix.local_now() - 10
    date = time.strftime("%Y-%m-%d", time.gmtime(start))
    strix.write_demo_event(str(server["base"] / "Camera1" / date / "77"), strix._demo_scene(1),
                           (200, 200, 200), start)
    (server["base"] / "queue" / f"Camera1_{date}_77").touch()  # as motion's on_event_end
    for _ in range(100):
        if len(listed(server, "Camera1")) > before:
            break
        time.sleep(0.1)
    page.clock.run_for(31 * 1000)
    expect(page.locator("#strip-Camera1 .count")).to_have_text(f"1–5 of {before + 1}")
    expect(page.locator("#strip-Camera1 a.thumb").first).to_have_attribute(
        "href", page_path(listed(server, "Camera1")[0]))

