// An import under way: follows its progress every half second, then opens its report.
(function () {
  var panel = document.getElementById('import-job');
  if (!panel || !document.getElementById('job-bar')) return;
  var url = panel.getAttribute('data-progress');
  function set(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value;
  }
  function poll() {
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        if (p.done_url) { window.location.assign(p.done_url); return; }
        if (p.phase === 'interrupted') { window.location.reload(); return; }
        set('job-phase', p.phase === 'refreshing' ? 'Refreshing the segments…' : 'Importing…');
        set('job-rows', Number(p.rows_read).toLocaleString('en'));
        set('job-read', Math.floor(p.bytes_read / 1024).toLocaleString('en'));
        var bar = document.getElementById('job-bar');
        if (bar) { bar.max = Math.max(p.bytes_total, 1); bar.value = p.bytes_read; }
        setTimeout(poll, 500);
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
