% rebase("layout.tpl", title=status)
<div class="card message">
  <h1>{{status}}</h1>
  <p>{{message}}</p>
  <p><a href="/">Back to the cameras</a></p>
</div>
