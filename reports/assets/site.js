// Sorting and filtering of the leaderboard tables; the page works without it (static HTML).
(function () {
  function value(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent.trim();
    if (String(v).trim() === '' || v === '–') return { empty: true };
    var n = parseFloat(v);
    return isNaN(n) || String(v).trim() === '' ? { text: String(v).toLowerCase() } : { num: n };
  }
  function sortTable(table, index, th) {
    var body = table.tBodies[0];
    var dir = th.getAttribute('aria-sort') === 'descending' ? 'ascending' : 'descending';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[index]), y = value(b.cells[index]);
      // Cells with no comparable value (an incomplete row's average, a partial recovery) rank last either way.
      if (x.empty || y.empty) return (x.empty ? 1 : 0) - (y.empty ? 1 : 0);
      var c = x.num !== undefined && y.num !== undefined ? x.num - y.num : String(x.text || x.num).localeCompare(String(y.text || y.num));
      return dir === 'ascending' ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function applyFilters(board) {
    var m = board.querySelector('[data-filter="method"]'), r = board.querySelector('[data-filter="ratio"]');
    var table = board.querySelector('table.board');
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var ok = (!m || !m.value || row.getAttribute('data-method') === m.value) && (!r || !r.value || row.getAttribute('data-ratio') === r.value);
      row.hidden = !ok;
    });
    Array.prototype.forEach.call(board.querySelectorAll('[data-filter-task]'), function (box) {
      var task = box.getAttribute('data-filter-task');
      Array.prototype.forEach.call(table.querySelectorAll('[data-task="' + task + '"]'), function (cell) { cell.hidden = !box.checked; });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.board'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener('click', function () { sortTable(table, i, th); });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('.leaderboard'), function (board) {
    Array.prototype.forEach.call(board.querySelectorAll('select, input'), function (el) {
      el.addEventListener('change', function () { applyFilters(board); });
    });
  });
})();
