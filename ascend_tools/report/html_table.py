"""One table in the HTML report: a fixed layout with a width per column chosen by its kind, its rows as
data, and a page of them as DOM.

Every row is embedded once as JSON (``<script type="application/json">``, cells as display text, a long
cell as ``[shown, full]``); the page's script (:data:`TABLE_JS`) renders one page of rows at a time from it,
and filters and sorts over all rows, so a 100,000-row table is one array, not 100,000 DOM rows. The first
page is also written as plain HTML, so the report reads without JavaScript (the rest then says how many
rows it holds). Tables longer than :data:`COLLAPSE_ROWS` are collapsed (``<details>``) under their title:
the headline tables and findings come first on the page.

Widths, in characters (``ch``): each column gets its header's or its 95th-percentile cell's width, within
the bounds of its kind (:data:`BOUNDS`). Cells wider than their column are shortened by kind
(``text_cells.shorten``) with the full text on hover; text cells wrap at spaces up to :data:`TEXT_LINES`
lines.
"""

import html
import json
import math
from typing import Any, Dict, List, Optional, Sequence, Union

from .columns import Columns, columns
from .model import Table
from .render_text import status_class
from .text_cells import ID, NUMBER, PATH, TEXT, is_number, one_line, shorten_column, text_width
from .text_table import fit_widths

PAGE_ROWS = 100
COLLAPSE_ROWS = 50
TEXT_LINES = 3
#: (min, max) width in characters of a column of each kind
BOUNDS = {ID: (6, 44), PATH: (12, 40), NUMBER: (4, 12), TEXT: (10, 48)}
#: how far a column of each kind may shrink for the table to fit the page (numbers never shrink)
MIN_FIT = {ID: 18, PATH: 16, TEXT: 16}
PAGE_CH = 120  # the table width that fits a 1,280 px window (about 8 px a character), in characters
CELL_PAD = 3  # a cell's padding, in characters

Cell = Union[str, List[str]]

TABLE_JS = """
(function(){
  var coll=(window.Intl&&Intl.Collator)?new Intl.Collator(undefined,{numeric:true}):null;
  function cmpText(a,b){return coll?coll.compare(a,b):(a<b?-1:a>b?1:0);}
  function shown(c){return typeof c==='string'?c:c[0];}
  function full(c){return typeof c==='string'?c:c[1];}
  function num(t){
    if(t==='inf') return Infinity; if(t==='-inf') return -Infinity;
    if(t===''||t==='nan') return null; var n=Number(t); return isNaN(n)?null:n;
  }
  Array.prototype.forEach.call(document.querySelectorAll('.table-block'),function(block){
    var table=block.querySelector('table.data'), data=block.querySelector('script.rows-data');
    if(!table||!data||!table.tBodies.length||!table.tHead) return;
    var meta=JSON.parse(table.getAttribute('data-meta')), parsed=JSON.parse(data.textContent);
    var rows=parsed.rows, dicts=parsed.dicts, sortKeys=parsed.keys||{};
    function at(j,i){var c=rows[j][i], d=dicts[i]; return d?d[c]:c;}
    var kinds=meta.kinds, st=meta.status, size=meta.page||100, pills=meta.pills||{};
    var tbody=table.tBodies[0], heads=table.tHead.rows[0].cells;
    var tools=block.querySelector('.tools'), input=tools.querySelector('input.filter');
    var count=tools.querySelector('.count'), pager=tools.querySelector('.pager');
    var prev=tools.querySelector('.prev'), next=tools.querySelector('.next'), label=tools.querySelector('.page');
    var nojs=block.querySelector('.nojs'); if(nojs) nojs.hidden=true;
    var order=rows.map(function(_,i){return i;}), view=order, page=0, hay=null, timer=null;
    function td(c,i){
      var el=document.createElement('td'), s=shown(c); el.className='k-'+kinds[i];
      if(typeof c!=='string') el.title=c[1];
      if(i===st&&s){var p=document.createElement('span'); p.className='pill'+(pills[s]?' st-'+pills[s]:'');
        p.textContent=s; el.appendChild(p);} else el.textContent=s;
      return el;
    }
    function render(){
      var pages=Math.max(1,Math.ceil(view.length/size)); if(page>=pages) page=pages-1;
      var frag=document.createDocumentFragment();
      view.slice(page*size,(page+1)*size).forEach(function(j){
        var tr=document.createElement('tr');
        for(var i=0;i<kinds.length;i++) tr.appendChild(td(at(j,i),i));
        frag.appendChild(tr);
      });
      tbody.textContent=''; tbody.appendChild(frag);
      pager.hidden=view.length<=size; prev.disabled=page===0; next.disabled=page>=pages-1;
      label.textContent=view.length?('rows '+(page*size+1)+'–'+Math.min(view.length,(page+1)*size)+' of '+view.length):'no rows';
      count.textContent=view.length<rows.length?(view.length+' of '+rows.length+' rows match'):'';
    }
    function filter(){
      var q=input.value.trim().toLowerCase();
      if(q&&!hay) hay=rows.map(function(r,j){
        var s=[]; for(var i=0;i<kinds.length;i++) s.push(full(at(j,i))); return s.join('\\t').toLowerCase();});
      view=q?order.filter(function(j){return hay[j].indexOf(q)>=0;}):order; page=0; render();
    }
    tools.hidden=false; render();
    input.addEventListener('input',function(){clearTimeout(timer); timer=setTimeout(filter,120);});
    prev.addEventListener('click',function(){page--; render();});
    next.addEventListener('click',function(){page++; render();});
    Array.prototype.forEach.call(heads,function(th,i){
      th.classList.add('sortable'); th.tabIndex=0;
      function sort(){
        var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
        Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',dir===1?'ascending':'descending');
        var isNum=kinds[i]==='number';
        var raw=sortKeys[i];
        var keys=rows.map(function(r,j){
          if(raw&&raw[j]!==null) return raw[j]; var t=full(at(j,i)); return isNum?num(t):t;});
        order=order.slice().sort(function(a,b){
          var x=keys[a], y=keys[b], ex=x===null||x==='', ey=y===null||y==='';
          if(ex||ey) return (ex?1:0)-(ey?1:0)||a-b;
          return (isNum?(x<y?-1:x>y?1:0):cmpText(x,y))*dir||a-b;
        });
        filter();
      }
      th.addEventListener('click',sort);
      th.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();sort();}});
    });
  });
})();
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def pill(text: str, value: Any) -> str:
    cls = status_class(value)
    return f'<span class="pill{" st-" + cls if cls else ""}">{esc(text)}</span>'


def column_widths(cols: Columns, texts: Sequence[Sequence[str]]) -> List[int]:
    """Each column's width in characters: its header or the 95th percentile of its cells, in bounds;
    then, while the table is wider than :data:`PAGE_CH`, the widest column above its kind's minimum
    gives up a character."""
    widths = []
    for i, (header, kind) in enumerate(zip(cols.headers, cols.kinds)):
        lens = sorted(text_width(t[i]) for t in texts)
        p95 = lens[min(len(lens) - 1, int(0.95 * len(lens)))] if lens else 0
        lo, hi = BOUNDS[kind]
        want = max(min(text_width(header) + 2, 24), p95)
        widths.append(max(lo, min(hi, want)))
    mins = [MIN_FIT.get(k, w) for k, w in zip(cols.kinds, widths)]
    return fit_widths(widths, mins, PAGE_CH, sep=CELL_PAD)


def _cells(values: List[str], kind: str, width: int) -> List[Cell]:
    """The column's values as shown, each with its full text when it was shortened to fit."""
    limit = width * TEXT_LINES if kind == TEXT else width
    if kind == NUMBER:
        return list(values)
    shown = shorten_column(values, limit, kind)
    return [v if v == short else [short, v] for v, short in zip(values, shown)]


def _td(cell: Cell, kind: str, is_status: bool) -> str:
    shown, full = (cell, None) if isinstance(cell, str) else cell
    title = f' title="{esc(full)}"' if full is not None else ""
    inner = pill(shown, shown) if is_status and shown else esc(shown)
    return f'<td class="k-{kind}"{title}>{inner}</td>'


def encode(texts: List[List[str]], kinds: List[str], widths: List[int]) -> Dict[str, Any]:
    """The rows as data: ``rows`` of cells; a column where values repeat (sites, modules, dtypes) holds
    indices into its list in ``dicts`` instead, so a long path that recurs is written once."""
    n = len(texts)
    dicts: Dict[str, List[Cell]] = {}
    columns_out: List[List[Union[int, Cell]]] = []
    for i, (kind, width) in enumerate(zip(kinds, widths)):
        values = [t[i] for t in texts]
        index: Dict[str, int] = {}
        for v in values:
            index.setdefault(v, len(index))
        cells = _cells(list(index), kind, width)
        if n > 1 and len(index) <= n // 2:
            dicts[str(i)] = cells
            columns_out.append(list(index[v] for v in values))
        else:
            columns_out.append(list(cells[index[v]] for v in values))
    return {"dicts": dicts, "rows": [list(r) for r in zip(*columns_out)] if columns_out else []}


def sort_keys(cols: Columns) -> Dict[str, List[Optional[float]]]:
    """The exact values of the number columns whose shown text is rounded, so that sorting orders rows by
    value, not by the 4 digits shown (None: not a finite number; the shown text decides)."""
    keys: Dict[str, List[Optional[float]]] = {}
    for i, kind in enumerate(cols.kinds):
        if kind != NUMBER:
            continue
        values = [float(r[i]) if is_number(r[i]) and math.isfinite(r[i]) else None for r in cols.rows]
        if any(v is not None and v != float(cols.text(r, i)) for v, r in zip(values, cols.rows)):
            keys[str(i)] = values
    return keys


def _json(data: Any) -> str:
    """``data`` as JSON safe inside ``<script>``: no ``</script>`` or ``<!--`` can be spelled."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_table(table: Table, tid: str) -> List[str]:
    cols = columns(table)
    n = len(cols.rows)
    title = esc(table.title) if table.title else ""
    count = f'<span class="rows">{n} row{"s" if n != 1 else ""}</span>'
    collapsed = n > COLLAPSE_ROWS
    if collapsed:
        out = [
            f'<details class="table-block" id="{tid}"><summary><h3>{title or "All rows"}{count}</h3></summary>'
        ]
    else:
        out = ['<div class="table-block">']
        if title:
            out.append(f'<h3 id="{tid}">{title}{count}</h3>')
    if not cols.headers:
        out.append('<p class="empty">Empty table.</p>')
        out.append("</details>" if collapsed else "</div>")
        return out
    texts = [[one_line(cols.text(r, i)) for i in range(len(cols.headers))] for r in cols.rows]
    widths = column_widths(cols, texts)
    data = encode(texts, cols.kinds, widths)
    data["keys"] = sort_keys(cols)
    label = esc(f"Filter {table.title or 'rows'}")
    out.append(
        f'<div class="tools" hidden><input type="search" class="filter" placeholder="Filter rows…" '
        f'aria-label="{label}"><span class="count" aria-live="polite"></span>'
        '<span class="pager"><button type="button" class="prev">‹ Prev</button>'
        '<span class="page"></span><button type="button" class="next">Next ›</button></span></div>'
    )
    pills = {}
    if cols.status is not None:
        pills = {t[cols.status]: status_class(t[cols.status]) for t in texts if status_class(t[cols.status])}
    meta = {"kinds": cols.kinds, "status": cols.status, "page": PAGE_ROWS, "pills": pills}
    total = sum(widths) + CELL_PAD * len(widths)
    out.append(
        f'<div class="table-wrap"><table class="data" data-meta="{esc(json.dumps(meta))}" '
        f'style="width:{total}ch"><colgroup>'
        + "".join(f'<col style="width:{w + CELL_PAD}ch">' for w in widths)
        + "</colgroup><thead><tr>"
    )
    out.append(
        "".join(
            f'<th scope="col" class="k-{k}" title="{esc(h)}">{esc(h)}</th>'
            for h, k in zip(cols.headers, cols.kinds)
        )
    )
    out.append("</tr></thead><tbody>")
    dicts = data["dicts"]
    for row in data["rows"][:PAGE_ROWS]:
        cells = [dicts[str(i)][c] if str(i) in dicts else c for i, c in enumerate(row)]
        out.append(
            "<tr>"
            + "".join(_td(c, k, i == cols.status) for i, (c, k) in enumerate(zip(cells, cols.kinds)))
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    if n > 1:
        out.append(f'<script type="application/json" class="rows-data">{_json(data)}</script>')
    if n > PAGE_ROWS:
        out.append(
            f'<p class="note nojs">The first {PAGE_ROWS} of {n} rows; the others are shown with JavaScript '
            "(or in -f json).</p>"
        )
    if not cols.rows:
        out.append('<p class="empty">No rows.</p>')
    if table.note:
        out.append(f'<p class="note">{esc(table.note)}</p>')
    out.append("</details>" if collapsed else "</div>")
    return out
