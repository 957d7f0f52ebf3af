<nav class="pager" aria-label="{{label}}">
% if newer:
  <a href="{{newer}}" rel="prev">‹ {{get("newer_text", "Newer")}}</a>
% else:
  <span aria-disabled="true">‹ Newer</span>
% end
  <span class="count">{{count}}</span>
% if older:
  <a href="{{older}}" rel="next">{{get("older_text", "Older")}} ›</a>
% else:
  <span aria-disabled="true">Older ›</span>
% end
</nav>
