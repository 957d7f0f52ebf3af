% rebase("layout.tpl", title=status)
<h2>{{status}}</h2>
<p>{{message}}</p>
<p><a href="/">Back to the cameras</a></p>
