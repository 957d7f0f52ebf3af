<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>{{title}} · strix</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/strix.svg" type="image/svg+xml">
% if get("reload"):
<noscript><meta http-equiv="refresh" content="{{reload}}"></noscript>
% end
<script src="/static/strix.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/"><img src="/static/strix.svg" alt="" width="28" height="28">strix</a>
  <nav aria-label="Cameras">
% for each in cameras:
    <a href="/camera/{{each.id}}"{{!' aria-current="page"' if get("current") == each else ""}}>{{each.name}}</a>
% end
  </nav>
  <a class="status-link{{'' if healthy else ' warn'}}" href="/status"{{!'' if healthy else ' title="strix needs attention"'}}>{{"Status" if healthy else "⚠ Status"}}</a>
</header>
<main id="main">
{{!base}}
</main>
<footer>strix {{version}}</footer>
</body>
</html>
