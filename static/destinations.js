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
