// Live progress of an export run: polls the run's progress once a second until it ends.
(function () {
  var panel = document.getElementById('run');
  if (!panel) return;
  var url = panel.getAttribute('data-progress');
  function set(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value;
  }
  function poll() {
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        set('run-status', p.status);
        set('run-total', p.total);
        set('run-sent', p.sent);
        set('run-created', p.created);
        set('run-updated', p.updated);
        set('run-unchanged', p.unchanged);
        set('run-skipped', p.skipped);
        set('run-failed', p.failed);
        set('run-tags', p.tag_changes);
        set('run-rate', p.rate_per_second);
        set('run-left', p.seconds_left === null ? '' : p.seconds_left + ' s');
        set('run-message', p.message);
        var bar = document.getElementById('run-bar');
        if (bar) { bar.max = Math.max(p.total, 1); bar.value = p.done; }
        if (p.finished) {
          var cancel = document.getElementById('cancel-form');
          if (cancel) cancel.remove();
        } else {
          setTimeout(poll, 1000);
        }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
