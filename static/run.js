// Live progress of an export run: polls the run's progress once a second until it ends,
// then loads the page again to show the times, the reasons and what can be done next.
(function () {
  var panel = document.getElementById('run');
  if (!panel || panel.getAttribute('data-finished') === 'true') return;
  var url = panel.getAttribute('data-progress');
  function set(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value;
  }
  function count(n) { return Number(n).toLocaleString('en'); }
  function poll() {
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        if (p.finished) { window.location.reload(); return; }
        set('run-status', p.status);
        set('run-total', count(p.total));
        set('run-sent', count(p.sent));
        set('run-created', count(p.created));
        set('run-updated', count(p.updated));
        set('run-unchanged', count(p.unchanged));
        set('run-skipped', count(p.skipped));
        set('run-failed', count(p.failed));
        set('run-tags', count(p.tag_changes));
        set('run-rate', p.rate_per_second);
        var left = document.getElementById('run-left-row');
        if (left) left.hidden = p.seconds_left === null;
        set('run-left', p.seconds_left === null ? '' : p.seconds_left + ' s');
        set('run-message', p.message);
        var bar = document.getElementById('run-bar');
        if (bar) { bar.max = Math.max(p.total, 1); bar.value = p.done; }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
