// Search (web/search.rs). Every control is a plain form that works without this: the header's
// box submits to the results page, the file finder's form filters on the server. This adds
// suggestions under the header's box as you type, filtering the file finder as you type, and
// the `t` key on a repository's pages, which opens the file finder as in Bitbucket.
(function () {
  if (typeof module !== 'undefined') return;
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  // Arrow keys move through links in `box`; Enter follows the chosen one.
  function arrows(input, box, onEnter) {
    input.addEventListener('keydown', function (e) {
      var links = box.querySelectorAll('a');
      if (!links.length || (e.key !== 'ArrowDown' && e.key !== 'ArrowUp' && e.key !== 'Enter')) return;
      var cur = box.querySelector('a.active'), i = Array.prototype.indexOf.call(links, cur);
      if (e.key === 'Enter') {
        if (cur) { e.preventDefault(); location.href = cur.href; } else if (onEnter) onEnter(e);
        return;
      }
      e.preventDefault();
      if (cur) cur.classList.remove('active');
      i = e.key === 'ArrowDown' ? Math.min(i + 1, links.length - 1) : Math.max(i - 1, 0);
      links[i].classList.add('active');
      links[i].scrollIntoView({ block: 'nearest' });
    });
  }
  document.addEventListener('DOMContentLoaded', function () {
    // The header's search box: suggestions from /search/suggest.
    var form = document.querySelector('header.top form.search');
    if (form && window.fetch) {
      var input = form.querySelector('input[name=q]'), box = document.getElementById('search-suggest');
      var timer = null, seq = 0;
      var hide = function () { box.hidden = true; input.setAttribute('aria-expanded', 'false'); };
      var show = function (data) {
        box.textContent = '';
        var add = function (title, items, label) {
          if (!items.length) return;
          box.appendChild(el('div', 'group', title));
          items.forEach(function (it) { var a = el('a', null, label(it)); a.href = it.url; box.appendChild(a); });
        };
        add('Repositories', data.repositories, function (r) { return r.project + ' / ' + r.name; });
        add('Projects', data.projects, function (p) { return p.name + ' (' + p.key + ')'; });
        var code = el('a', 'more', 'Search the code for \u201c' + input.value.trim() + '\u201d');
        code.href = data.code;
        box.appendChild(code);
        box.hidden = false;
        input.setAttribute('aria-expanded', 'true');
      };
      input.addEventListener('input', function () {
        clearTimeout(timer);
        var q = input.value.trim();
        if (!q) { hide(); return; }
        timer = setTimeout(function () {
          var mine = ++seq;
          fetch(form.getAttribute('data-suggest') + '?q=' + encodeURIComponent(q), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (data) { if (data && mine === seq && input.value.trim()) show(data); })
            .catch(function () {});
        }, 120);
      });
      input.addEventListener('keydown', function (e) { if (e.key === 'Escape') hide(); });
      arrows(input, box);
      document.addEventListener('click', function (e) { if (!form.contains(e.target)) hide(); });
    }
    // The file finder: the whole listing once, then filtering here as you type.
    var finder = document.getElementById('finder-form');
    if (finder && window.fetch) {
      var fin = document.getElementById('finder-input'), list = document.getElementById('finder-results');
      var count = document.getElementById('finder-count'), files = null, data = null;
      var score = function (q, path) {
        var p = path.toLowerCase(), name = p.lastIndexOf('/') + 1, s = 0, qi = 0, last = -2;
        var at = p.lastIndexOf(q);
        if (at >= 0) { s += 1000; if (at >= name) s += 1000; }
        for (var i = 0; i < p.length && qi < q.length; i++) {
          if (p[i] === q[qi]) { if (last === i - 1) s += 10; if (i >= name) s += 5; last = i; qi++; }
        }
        return qi === q.length ? s - p.length : null;
      };
      var render = function () {
        var q = fin.value.toLowerCase().replace(/\s+/g, ''), found = [];
        for (var i = 0; i < files.length; i++) {
          var s = q ? score(q, files[i]) : 0;
          if (s !== null) found.push([s, files[i]]);
        }
        if (q) found.sort(function (a, b) { return b[0] - a[0] || (a[1] < b[1] ? -1 : 1); });
        list.textContent = '';
        found.slice(0, 200).forEach(function (f, i) {
          var li = el('li'), a = el('a', i === 0 && q ? 'active' : null, f[1]);
          a.href = data.browse + '/' + f[1].split('/').map(encodeURIComponent).join('/') + data.at;
          li.appendChild(a);
          list.appendChild(li);
        });
        var one = found.length === 1;
        count.textContent = found.length + (one ? ' file' : ' files') + (q ? (one ? ' matches' : ' match') : '') + '.' + (found.length > 200 ? ' The first 200 are shown.' : '') +
          (data.truncated ? ' The repository has more files than are listed.' : '');
      };
      fetch(finder.getAttribute('data-finder'), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) return;
          data = d; files = d.files;
          finder.setAttribute('data-ready', '1');
          render();
          fin.addEventListener('input', render);
        })
        .catch(function () {});
      arrows(fin, list, function () {});
      finder.addEventListener('submit', function (e) {
        var first = list.querySelector('a.active') || list.querySelector('a');
        if (files && first) { e.preventDefault(); location.href = first.href; }
      });
    }
  });
  // `t` on a repository's pages opens its file finder at the revision shown (`?at=`).
  document.addEventListener('keydown', function (e) {
    if (e.key !== 't' || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var m = location.pathname.match(/^(.*\/projects\/[^/]+\/repos\/[^/]+)(\/|$)/);
    if (!m || /\/find$/.test(location.pathname)) return;
    var at = new URLSearchParams(location.search).get('at');
    e.preventDefault();
    location.href = m[1] + '/find' + (at ? '?at=' + encodeURIComponent(at) : '');
  });
})();
