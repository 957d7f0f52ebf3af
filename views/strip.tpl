<div class="strip" id="strip-{{camera.id}}" data-camera="{{camera.id}}" data-offset="{{offset}}">
% if events:
  <ol class="thumbs">
%   for event in events:
    <li>
%     include("thumb.tpl", event=event, label=short_time(event.start))
    </li>
%   end
  </ol>
% else:
  <p class="empty">{{"No older events." if offset else "No events yet."}}</p>
% end
% count = f"{offset + 1}–{offset + len(events)} of {total}" if events else f"{total} events"
% include("pager.tpl", label=f"Events of {camera.name}", newer=newer, older=older, count=count)
</div>
