<div class="strip" id="strip-{{camera.id}}" data-camera="{{camera.id}}" data-offset="{{offset}}">
% if events:
%   include("thumbs.tpl", events=events, label=lambda event: short_time(event.start))
% else:
  <p class="empty">{{"No older events." if offset else "No events yet."}}</p>
% end
% count = f"{offset + 1}–{offset + len(events)} of {total}" if events else f"{total} events"
% include("pager.tpl", label=f"Events of {camera.name}", newer=newer, older=older, count=count)
</div>
