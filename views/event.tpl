% rebase("layout.tpl", title=f"{camera.name}, {event_title(event.start)}", current=camera)
<div class="page-head">
  <h1><a href="/camera/{{camera.id}}">{{camera.name}}</a> <span>{{event_title(event.start)}}</span></h1>
% if event.saved:
  <span class="kept">Kept</span>
% end
</div>
% include("pager.tpl", label="Other events of this camera", newer=newer and event_page_url(newer), older=older and event_page_url(older), count="",
%         newer_text=newer and f"Newer · {short_time(newer.start)}", older_text=older and f"Older · {short_time(older.start)}")
<div class="event">
  <div class="player">
% if event.flags & HAS_VIDEO:
    <video controls playsinline preload="metadata" poster="{{event.url}}/thumbnail.jpg" src="{{event.url}}/{{"debug/" if debug else ""}}video.m4v"></video>
% elif frames:
    <figure class="slideshow" data-base="{{event.url}}/" data-frames="{{" ".join(frames)}}" data-fps="{{"%.2f" % fps}}">
      <img src="{{event.url}}/{{frames[0]}}" alt="Frame 1 of {{len(frames)}}" width="640" height="360">
      <figcaption>No video for this event: its {{len(frames)}} frames one by one. <button type="button" hidden></button> <output>1 / {{len(frames)}}</output></figcaption>
    </figure>
% else:
    <p class="empty">This event has neither a video nor frames.</p>
% end
  </div>
  <aside class="card details">
    <dl>
      <dt>Start</dt><dd>{{event_title(event.start)}}</dd>
      <dt>End</dt><dd>{{event_title(event.start + event.length)}}</dd>
      <dt>Duration</dt><dd>{{duration(event.length)}}</dd>
      <dt>Frames</dt><dd>{{len(frames)}}</dd>
    </dl>
    <div class="actions">
% if event.flags & HAS_VIDEO:
%   if has_debug:
%     page, labels = event_page_url(event), ("Show what moved (debug)", "Show the video")
      <a class="button" id="debug-toggle" href="{{page}}{{"" if debug else "?debug=1"}}" data-href="{{page}}{{"?debug=1" if debug else ""}}" data-src="{{event.url}}/{{"" if debug else "debug/"}}video.m4v" data-text="{{labels[not debug]}}">{{labels[debug]}}</a>
%   end
      <a class="button" href="{{event.url}}/video.m4v?download=1" download>Download the video</a>
% end
      <form method="post" action="{{event_page_url(event)}}/{{"unkeep" if event.saved else "keep"}}">
        <input type="hidden" name="token" value="{{token}}">
        <button type="submit">{{"Stop keeping" if event.saved else "Keep (never expire)"}}</button>
      </form>
      <details class="delete">
        <summary>Delete…</summary>
        <form method="post" action="{{event_page_url(event)}}/delete">
          <p>Delete this event, its video and frames, for good?</p>
          <input type="hidden" name="token" value="{{token}}">
          <button type="submit" class="danger">Delete for good</button>
        </form>
      </details>
    </div>
  </aside>
</div>
% if frames:
<section class="frames" aria-labelledby="frames-title">
  <h2 id="frames-title">Frames{{f" ({len(tiles)} of {len(frames)}: one in {every})" if every > 1 else ""}}</h2>
  <ol>
%   for number, frame in enumerate(tiles):
    <li><a href="{{event.url}}/{{frame}}"><img src="{{event.url}}/{{frame}}" alt="Frame {{number * every + 1}}, {{frame[:8].replace("-", ":")}}" loading="lazy" width="320" height="180"></a></li>
%   end
  </ol>
  <p><a href="{{event.url}}/">All frames as a list</a></p>
</section>
% end
