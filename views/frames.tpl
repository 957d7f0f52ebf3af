% rebase("layout.tpl", title=f"{event.camera} {event.date} {event.name}")
<div class="card message">
  <h1>{{event.camera}}, {{event.date}} {{event.name}}: {{len(frames)}} frames</h1>
  <p><a href="{{event_page_url(event)}}">Back to the event</a></p>
  <ul class="frame-list">
% for frame in frames:
    <li><a href="{{event.url}}/{{frame}}">{{frame}}</a></li>
% end
  </ul>
</div>
