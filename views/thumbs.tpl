% # A list of event thumbnails; label(event) is the text over each. URLs and titles are
% # strix's own (CameraN, dates, times), printed raw: camera pages list a hundred of these.
<ol class="thumbs">
% for event in events:
%   title = event_title(event.start)
  <li>
    <a class="thumb" href="{{!event_page_url(event)}}" title="{{!title}}">
%   if event.flags & HAS_THUMBNAIL:
    <img src="{{!event.url}}/thumbnail.jpg" alt="{{camera.name}}, {{!title}}" loading="lazy" width="320" height="180">
%   else:
    <span class="missing" role="img" aria-label="{{camera.name}}, {{!title}}: no picture">no picture</span>
%   end
    <span class="when">{{!label(event)}}</span>{{!'<span class="kept">Kept</span>' if event.saved else ""}}</a>
  </li>
% end
</ol>
