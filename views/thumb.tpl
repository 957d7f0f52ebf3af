<a class="thumb" href="{{event_page_url(event)}}" title="{{event_title(event.start)}}">
% if event.flags & HAS_THUMBNAIL:
<img src="{{event.url}}/thumbnail.jpg" alt="{{camera.name}}, {{event_title(event.start)}}" loading="lazy" width="320" height="180">
% else:
<span class="missing" role="img" aria-label="{{camera.name}}, {{event_title(event.start)}}: no picture">no picture</span>
% end
<span class="when">{{label}}</span>{{!'<span class="kept">Kept</span>' if event.saved else ""}}</a>
