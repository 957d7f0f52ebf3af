% peak = max(max(counts) for counts in chart.values()) or 1
<svg class="heatmap" viewBox="0 0 530 142" role="group" aria-label="Events per hour of {{camera.name}}, today first">
  <defs><pattern id="hours" x="58" y="16" width="18" height="18" patternUnits="userSpaceOnUse"><rect class="l0" width="15" height="15" rx="3"/></pattern></defs>
  <rect x="58" y="16" width="432" height="126" fill="url(#hours)"/>
% for hour in range(0, 24, 3):
  <text class="axis" x="{{65.5 + hour * 18}}" y="11" text-anchor="middle">{{"%02d" % hour}}</text>
% end
% for row, date in enumerate(chart_dates):
%   y, name = 16 + row * 18, day_title(date)
  <text class="axis" x="0" y="{{y + 12}}">{{name[:3]}} {{name[8:10]}}</text>
%   for hour, count in enumerate(chart[date]):
%     if count:
%       what = f"{name[:10]}, {hour:02d}:00 to {hour + 1:02d}:00: {count} event{'s' if count > 1 else ''}"
%       # dates, hours and counts are strix's own: printed raw, this loop runs 168 times
  <a href="/camera/{{!camera.id}}?start={{!date}}+{{!"%02d" % hour}}:00:00&amp;end={{!date}}+{{!"%02d" % hour}}:59:59" aria-label="{{!what}}"><rect class="l{{!-(-count * 4 // peak)}}" x="{{!58 + hour * 18}}" y="{{!y}}" width="15" height="15" rx="3"><title>{{!what}}</title></rect></a>
%     end
%   end
  <text class="axis total" x="530" y="{{y + 12}}" text-anchor="end">{{sum(chart[date])}}</text>
% end
</svg>
<p class="legend" aria-hidden="true">Fewer <i class="l0"></i><i class="l1"></i><i class="l2"></i><i class="l3"></i><i class="l4"></i> More</p>
