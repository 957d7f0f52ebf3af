% rebase("layout.tpl", title="Status")
% disk = status["disk"]
% used_percent = 100 * disk["used"] / ((disk["used"] + disk["free"]) or 1)  # as df counts
<div class="page-head"><h1>Status</h1></div>
% if status["health"]["ok"]:
<p class="notice">All is well: strix serves and processes events.</p>
% else:
<div class="notice warning" role="alert"><strong>Needs attention:</strong>
<ul>
% for reason in status["health"]["reasons"]:
<li>{{reason}}</li>
% end
</ul></div>
% end
<section class="card status-grid">
  <h2>Media folder</h2>
  <p>{{status["base"]}}: {{size(disk["used"])}} used of {{size(disk["total"])}}, {{size(disk["free"])}} free; events take {{size(status["media_bytes"])}}.</p>
  <meter class="bar" min="0" max="100" low="80" high="90" optimum="0" value="{{round(used_percent, 1)}}" aria-label="Disk {{round(used_percent)}}% used">{{round(used_percent)}}% used</meter>
  <p class="muted">Keeps at least {{f"{status['min_free_percent']:g}"}}% of the disk free{{f', and the events within {size(status["max_media_bytes"])}' if status["max_media_bytes"] else ''}}.
% expiry = status["last_expiry"]
% if expiry:
  Last expiry {{expiry["time"]}}: {{expiry["events"]}} events ({{expiry["for_space"]}} for space) in {{expiry["seconds"]}} s.
% end
  Up for {{duration(status["uptime_seconds"])}}; strix {{status["version"]}}.</p>
</section>
<section class="card">
  <h2>Cameras</h2>
  <div class="table"><table>
    <thead><tr><th scope="col">Camera</th><th scope="col">Events</th><th scope="col">Size</th><th scope="col">Last hour</th><th scope="col">Last day</th><th scope="col">Oldest</th><th scope="col">Newest</th><th scope="col">Live view</th></tr></thead>
    <tbody>
% for camera in status["cameras"]:
% stream = camera["stream"]
      <tr><th scope="row"><a href="/camera/{{camera['id']}}">{{camera["name"]}}</a></th><td>{{camera["events"]}}</td><td>{{size(camera["bytes"])}}</td><td>{{camera["last_hour"]}}</td><td>{{camera["last_day"]}}</td><td>{{camera["oldest"] or "–"}}</td><td>{{camera["newest"] or "–"}}</td>
        <td>{{"not checked yet" if stream is None else ("port %d answers" if stream["answers"] else "port %d does not answer") % camera["stream_port"]}}</td></tr>
% end
    </tbody>
  </table></div>
</section>
<section class="card">
  <h2>Processing</h2>
% queue = status["queue"]
  <p>{{len(queue["waiting"])}} waiting, {{len(queue["running"])}} running{{": " + ", ".join(queue["running"]) if queue["running"] else ""}}.</p>
% if queue["failed"]:
  <ul class="problems">
% for failure in queue["failed"]:
    <li>{{failure["time"]}} {{failure["camera"]}} {{failure["event"]}}: {{failure["reason"]}}</li>
% end
  </ul>
% end
</section>
<section class="card">
  <h2>Latest warnings and errors</h2>
% if status["problems"]:
  <ul class="problems">
% for problem in status["problems"]:
    <li><time>{{problem.get("timestamp", "")}}</time> {{problem.get("event", "")}} {{" ".join(f"{key}={value}" for key, value in problem.items() if key not in ("event", "timestamp", "level"))}}</li>
% end
  </ul>
% else:
  <p class="empty">None since strix started.</p>
% end
</section>
