% rebase("layout.tpl", title="Cameras")
<h1 class="hidden">Cameras</h1>
<div class="cameras" data-refresh="{{refresh}}">
% for values in strips:
%   camera = values["camera"]
<section class="card camera" aria-labelledby="name-{{camera.id}}">
  <div class="card-head">
    <h2 id="name-{{camera.id}}"><a href="/camera/{{camera.id}}">{{camera.name}}</a></h2>
    <a class="more" href="/camera/{{camera.id}}">History ›</a>
  </div>
  <figure class="stream">
    <figcaption><strong>{{camera.name}}</strong>Live view unavailable<small>motion's stream (port {{camera.stream_port}}) does not answer</small></figcaption>
    <img src="{{stream_url(camera)}}" alt="Live view of {{camera.name}}" width="640" height="360">
  </figure>
%   include("strip.tpl", **values)
</section>
% end
</div>
