% rebase("layout.tpl", title="Cameras")
% for camera in cameras:
<section class="camera">
  <h2>{{camera.name}}</h2>
  <div class="events">
  % for event in reversed(newest[camera.id]):
    <a href="{{event.url}}/video.m4v" title="{{event.json()['title']}}"><img src="{{event.url}}/thumbnail.jpg" alt="{{camera.name}}, {{event.json()['title']}}" loading="lazy"></a>
  % end
  % if not newest[camera.id]:
    <p>No events yet.</p>
  % end
  </div>
</section>
% end
