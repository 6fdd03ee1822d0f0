// Measurements of a report page in the browser, read by test_browser_reports.py. Evaluated once per page;
// defines window.__checks. Tables are named by their index in document order.
(function () {
  function tables() { return Array.prototype.slice.call(document.querySelectorAll('table')); }
  function shown(el) { return el.getClientRects().length > 0; }
  function bodyRows(t) {
    var rows = [];
    Array.prototype.forEach.call(t.tBodies, function (b) { rows.push.apply(rows, b.rows); });
    return rows.filter(shown);
  }
  function headers(t) {
    var head = t.tHead && t.tHead.rows.length ? t.tHead.rows[t.tHead.rows.length - 1] : null;
    return head ? Array.prototype.map.call(head.cells, function (c) { return c.textContent.trim(); }) : [];
  }
  function px(v) { return parseFloat(v) || 0; }
  function lineHeight(el) {
    var cs = getComputedStyle(el), lh = parseFloat(cs.lineHeight);
    return isNaN(lh) ? 1.2 * px(cs.fontSize) : lh;
  }
  // every text a row shows or holds for hover (a path shortened from the left keeps its full text in title)
  function rowText(r) {
    var t = r.textContent;
    if (r.title) t += ' ' + r.title;
    Array.prototype.forEach.call(r.querySelectorAll('[title]'), function (e) { t += ' ' + e.getAttribute('title'); });
    return t.toLowerCase();
  }
  function scrollBox(t) {
    for (var el = t.parentElement; el && el !== document.body; el = el.parentElement) {
      var o = getComputedStyle(el).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return el;
    }
    return null;
  }
  function filterInput(t) {
    for (var el = t.parentElement; el && el !== document.body; el = el.parentElement) {
      if (el.querySelectorAll('table').length > 1) return null;
      var input = el.querySelector('input[type=search], input.filter, input[type=text]');
      if (input) return input;
    }
    return null;
  }
  function cellNumber(c) {
    if (!c) return null;
    var v = c.getAttribute('data-v');
    if (v === null) v = c.textContent.trim().replace(/,/g, '');
    if (v === '') return null;
    var n = Number(v);
    return isNaN(n) ? null : n;
  }
  window.__checks = {
    page: function () {
      var root = document.documentElement;
      return {
        scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
        svgs: Array.prototype.filter.call(document.querySelectorAll('svg'), function (s) {
          var r = s.getBoundingClientRect();
          return r.width > 0 && r.height > 0 && s.querySelector('path, polyline, line, rect, circle');
        }).length,
        tables: tables().map(function (t) { return headers(t); })
      };
    },
    // the tallest shown row of table i, in lines of its cells' text
    rows: function (i) {
      var t = tables()[i], worst = {lines: 0, text: ''}, rows = bodyRows(t);
      rows.forEach(function (r) {
        if (!r.cells.length) return;
        var c = r.cells[0], cs = getComputedStyle(c);
        var content = r.getBoundingClientRect().height - px(cs.paddingTop) - px(cs.paddingBottom)
          - px(cs.borderTopWidth) - px(cs.borderBottomWidth);
        var lines = content / lineHeight(c);
        if (lines > worst.lines) worst = {lines: lines, text: r.textContent.replace(/\s+/g, ' ').slice(0, 160)};
      });
      var box = scrollBox(t), tr = t.getBoundingClientRect();
      var br = box ? box.getBoundingClientRect() : tr;
      return {
        shown: rows.length, tallest: worst.lines, tallestText: worst.text,
        tableWidth: tr.width, boxRight: br.right, boxScrolls: !!box,
        overflowsBox: box ? t.scrollWidth > box.clientWidth + 1 : false
      };
    },
    hasFilter: function (i) { var f = filterInput(tables()[i]); return !!(f && shown(f)); },
    focusFilter: function (i) {
      var f = filterInput(tables()[i]);
      f.scrollIntoView({block: 'center'}); f.focus(); f.select();
      return document.activeElement === f;
    },
    clearFilter: function (i) {
      var f = filterInput(tables()[i]);
      f.value = ''; f.dispatchEvent(new Event('input', {bubbles: true}));
    },
    shownRows: function (i) { return bodyRows(tables()[i]).length; },
    filtered: function (i, q) {
      var rows = bodyRows(tables()[i]);
      return {shown: rows.length, matching: rows.filter(function (r) { return rowText(r).indexOf(q) >= 0; }).length};
    },
    header: function (i, name) {  // the centre of column `name`'s header, scrolled into view
      var t = tables()[i], head = t.tHead.rows[t.tHead.rows.length - 1];
      var th = Array.prototype.filter.call(head.cells, function (c) { return c.textContent.trim() === name; })[0];
      th.scrollIntoView({block: 'center', inline: 'center'});
      var r = th.getBoundingClientRect();
      return {x: r.left + r.width / 2, y: r.top + r.height / 2};
    },
    column: function (i, name) {  // the shown values of column `name`, numbers where they parse
      var t = tables()[i], col = headers(t).indexOf(name);
      return bodyRows(t).map(function (r) {
        var c = r.cells[col], n = cellNumber(c);
        return n === null ? (c ? c.textContent.trim() : '') : n;
      });
    },
    settled: function () {
      return new Promise(function (done) { requestAnimationFrame(function () { requestAnimationFrame(done); }); });
    }
  };
})();
