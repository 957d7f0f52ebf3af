% rebase("layout.tpl", title=camera.name, current=camera)
<div class="page-head">
  <h1>{{camera.name}}</h1>
  <a class="more" href="/">All cameras</a>
</div>
% if deleted:
<p class="notice" role="status">Deleted the event of {{deleted}}.</p>
% end
<section class="card chart" aria-labelledby="activity">
  <h2 id="activity">Events per hour, last {{len(chart_dates)}} days</h2>
% include("chart.tpl")
</section>
<details class="card filter"{{!" open" if filters else ""}}>
  <summary>Filter by time{{f": {filters.get('start', '…')} to {filters.get('end', 'now')}" if filters else ""}}</summary>
  <form method="get" action="/camera/{{camera.id}}">
    <label>From <input type="datetime-local" name="start" step="1" value="{{filters.get('start', '').replace(' ', 'T')}}"></label>
    <label>To <input type="datetime-local" name="end" step="1" value="{{filters.get('end', '').replace(' ', 'T')}}"></label>
    <button type="submit">Show</button>
% if filters:
    <a href="/camera/{{camera.id}}">Clear</a>
% end
  </form>
</details>
<div class="history">
  <nav class="days card" aria-labelledby="days-title">
    <h2 id="days-title">Days</h2>
    <ol>
% shown = groups[0][0] if groups else None
% for date, count in days:
      <li><a href="/camera/{{camera.id}}?end={{date}}+23:59:59"{{!' aria-current="true"' if date == shown else ""}}>{{day_title(date)[:10]}} <span>{{count}}</span></a></li>
% end
    </ol>
  </nav>
  <div class="timeline">
% for date, events in groups:
    <section class="day" aria-labelledby="day-{{date}}">
      <h2 id="day-{{date}}">{{day_title(date)}}</h2>
%   include("thumbs.tpl", events=events, label=lambda event: f"{clock(event.start)} · {duration(event.length)}")
    </section>
% end
% if not groups:
    <p class="empty">{{"No events in this time range." if filters else "No events yet."}}</p>
% end
% if newer or older:
%   include("pager.tpl", label="Pages of events", newer=newer, older=older, count="")
% end
  </div>
</div>
