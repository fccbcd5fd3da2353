// A segment refresh under way: follows the profiles read and each segment's state every
// half second, and shows the result when it ends.
(function () {
  var panel = document.getElementById('refresh');
  if (!panel || panel.getAttribute('data-running') !== 'true') return;
  var url = panel.getAttribute('data-progress');
  function count(n) { return Number(n).toLocaleString('en'); }
  function poll() {
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (b) {
        if (!b) { setTimeout(poll, 500); return; }
        if (!b.running) { window.location.reload(); return; }
        document.getElementById('refresh-scanned').textContent = count(b.scanned);
        document.getElementById('refresh-profiles').textContent = count(b.profiles);
        var bar = document.getElementById('refresh-bar');
        bar.max = Math.max(b.profiles, 1); bar.value = b.scanned;
        b.segments.forEach(function (s) {
          var row = panel.querySelector('tr[data-id="' + s.id + '"]');
          if (!row) return;
          row.querySelector('.state').textContent = s.state;
          row.querySelector('.members').textContent = s.members === null ? '' : count(s.members);
          row.querySelector('.note').textContent = s.note || '';
        });
        setTimeout(poll, 500);
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
