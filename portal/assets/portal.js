// hubtunnel portal: times in the browser's own zone, the zone of the date
// fields, copy buttons, the reload while a hub waits. Every page works
// without it.
'use strict';
document.addEventListener('DOMContentLoaded', () => {
  const lang = document.documentElement.lang || undefined;
  for (const t of document.querySelectorAll('time[datetime]')) {
    const d = new Date(t.dateTime);
    if (!isNaN(d)) t.textContent = d.toLocaleString(lang, {dateStyle: 'medium', timeStyle: 'short'});
  }
  // A datetime-local field has no zone: send the browser's offset at the
  // chosen time (minutes east of UTC) along.
  for (const f of document.querySelectorAll('form')) {
    const tz = f.querySelector('input[name=tz]');
    if (!tz) continue;
    f.addEventListener('submit', () => {
      const dt = f.querySelector('input[type=datetime-local]');
      const d = dt && dt.value ? new Date(dt.value) : new Date();
      tz.value = String(-d.getTimezoneOffset());
    });
  }
  for (const b of document.querySelectorAll('button[data-copy]')) {
    if (!navigator.clipboard) { b.hidden = true; continue; }
    b.addEventListener('click', () => {
      const el = document.getElementById(b.dataset.copy);
      if (el) navigator.clipboard.writeText(el.textContent).then(() => { b.textContent = '✓'; });
    });
  }
  // While a hub waits to enroll or to connect, the page looks again every
  // few seconds, unless the person has started filling in a form.
  const every = Number(document.body.dataset.reload);
  if (every > 0) {
    let typing = false;
    document.addEventListener('input', () => { typing = true; });
    setTimeout(() => { if (!typing) location.reload(); }, every * 1000);
  }
});
