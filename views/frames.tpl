% rebase("layout.tpl", title=f"{event.camera} {event.date} {event.name}")
<h2>{{event.camera}}, {{event.date}} {{event.name}}: {{len(frames)}} frames</h2>
<ul class="frames">
% for frame in frames:
  <li><a href="{{event.url}}/{{frame}}">{{frame}}</a></li>
% end
</ul>
