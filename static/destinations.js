// The live total under the segment checklist: the sum of the chosen segments' members
// (a profile in several segments is exported once, so the export may be smaller).
(function () {
  var total = document.getElementById('segment-total');
  if (!total) return;
  var max = Number(total.getAttribute('data-max'));
  var boxes = document.querySelectorAll('input[name="segment"]');
  function update() {
    var sum = 0, chosen = 0;
    boxes.forEach(function (box) {
      if (box.checked) { sum += Number(box.getAttribute('data-members')); chosen += 1; }
    });
    var text = chosen + ' segment(s) chosen: up to ' + sum.toLocaleString('en') + ' profiles.';
    if (sum > max) {
      text += ' More than ' + max.toLocaleString('en') + ' profiles cannot be exported unless many are in several segments.';
      total.className = 'total over';
    } else {
      total.className = 'total';
    }
    total.textContent = text;
  }
  boxes.forEach(function (box) { box.addEventListener('change', update); });
  update();
})();

// The merge tag a new merge field will get, shown as its name is typed: the name's ASCII
// letters and digits in capitals, cut to Mailchimp's limit, unless a tag is typed.
(function () {
  var name = document.querySelector('input[name="new_field_name"]');
  var tag = document.querySelector('input[name="new_field_tag"]');
  var shown = document.getElementById('new-field-tag-shown');
  if (!name || !tag || !shown) return;
  var max = Number(tag.getAttribute('data-max')) || 10;
  function update() {
    var made = name.value.replace(/[^A-Za-z0-9]/g, '').slice(0, max).toUpperCase();
    tag.placeholder = made;
    var chosen = tag.value.trim();
    shown.textContent = chosen || made || '…';
  }
  name.addEventListener('input', update);
  tag.addEventListener('input', update);
  update();
})();
