document.addEventListener('click', function (e) {
  var b = e.target.closest('[data-copy]');
  if (!b) return;
  var el = document.getElementById(b.getAttribute('data-copy'));
  var done = function () { b.textContent = 'Copied'; setTimeout(function () { b.textContent = 'Copy'; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(el.value).then(done, function () { el.select(); document.execCommand('copy'); done(); });
  } else { el.select(); document.execCommand('copy'); done(); }
});
document.addEventListener('change', function (e) {
  if (e.target.matches('select[data-autosubmit]')) e.target.form.submit();
});
// The locked account's sign-in check (src/challenge.rs): find a nonce such that
// SHA-256("challenge:nonce") starts with `bits` zero bits, in slices so the page stays responsive.
(function () {
  var K = [0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2];
  var m = new Int32Array(64);
  // SHA-256 of an ASCII string; returns the first word of the digest.
  function sha256First(s) {
    var n = ((s.length + 8) >> 6) + 1, w = new Int32Array(n * 16), i, j;
    for (i = 0; i < s.length; i++) w[i >> 2] |= s.charCodeAt(i) << (24 - (i & 3) * 8);
    w[i >> 2] |= 0x80 << (24 - (i & 3) * 8);
    w[n * 16 - 1] = s.length * 8;
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    for (j = 0; j < n * 16; j += 16) {
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (i = 0; i < 64; i++) {
        if (i < 16) m[i] = w[j + i];
        else {
          var x = m[i - 15], y = m[i - 2];
          m[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + m[i - 16] +
            (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + m[i - 7];
        }
        var t1 = k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[i] + m[i];
        var t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
      h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
    }
    return h;
  }
  if (typeof module !== 'undefined') { module.exports = sha256First; return; }
  document.addEventListener('DOMContentLoaded', function () {
    var form = document.querySelector('form[data-pow-challenge]');
    if (!form) return;
    var prefix = form.getAttribute('data-pow-challenge') + ':', bits = +form.getAttribute('data-pow-bits');
    var nonce = 0, status = document.getElementById('pow-status'), button = form.querySelector('button[type=submit]');
    (function slice() {
      for (var end = nonce + 20000; nonce < end; nonce++) {
        if (Math.clz32(sha256First(prefix + nonce)[0]) >= bits) {
          form.elements.nonce.value = String(nonce);
          button.disabled = false;
          if (status) status.textContent = 'Check done: you can log in.';
          return;
        }
      }
      setTimeout(slice, 0);
    })();
  });
})();
// Pull-request diffs (web/pr_diff.rs). Every control is a link or a form that works on its
// own; this only saves page loads: files past the first load in place when scrolled to, "More
// context" and "Show anyway" replace their file, and a line's "+" opens the comment form under
// the line instead of loading the file's page.
(function () {
  if (typeof module !== 'undefined') return;
  document.addEventListener('DOMContentLoaded', function () {
    var page = document.querySelector('[data-pr-diff]');
    if (!page || !window.fetch || !('content' in document.createElement('template'))) return;
    var single = page.hasAttribute('data-single');
    function fragmentUrl(href) {
      var at = href.indexOf('#'), hash = at < 0 ? '' : href.slice(at);
      if (at >= 0) href = href.slice(0, at);
      return { url: href + (href.indexOf('?') < 0 ? '?' : '&') + 'fragment=1' + (single ? '&back=file' : ''), hash: hash };
    }
    // Replaces `section` (a file) with the file's section fetched from `href`.
    function swap(section, href) {
      if (section.getAttribute('data-loading')) return Promise.resolve(section);
      section.setAttribute('data-loading', '1');
      section.classList.add('loading');
      var f = fragmentUrl(href);
      return fetch(f.url, { credentials: 'same-origin', headers: { Accept: 'text/html' } }).then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.text();
      }).then(function (html) {
        var t = document.createElement('template');
        t.innerHTML = html.trim();
        var fresh = t.content.querySelector('section.pr-file');
        if (!fresh) throw new Error('no file section');
        section.replaceWith(fresh);
        if (f.hash && f.hash.length > 1) { var target = document.getElementById(f.hash.slice(1)); if (target) target.scrollIntoView({ block: 'center' }); }
        return fresh;
      }, function (e) {
        section.removeAttribute('data-loading');
        section.classList.remove('loading');
        throw e;
      });
    }
    var lazy = page.querySelectorAll('section.pr-file[data-lazy]');
    if ('IntersectionObserver' in window) {
      var io = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (!e.isIntersecting) return;
          io.unobserve(e.target);
          var a = e.target.querySelector('a.load-file');
          if (a) swap(e.target, a.getAttribute('href')).catch(function () {});
        });
      }, { rootMargin: '600px 0px' });
      lazy.forEach(function (s) { io.observe(s); });
    }
    function plainClick(e) { return e.button === 0 && !e.ctrlKey && !e.metaKey && !e.shiftKey && !e.altKey; }
    function openForm(link) {
      var row = link.closest('tr'), next = row.nextElementSibling;
      if (next && next.classList.contains('comment-form-row') && next.getAttribute('data-for') === link.getAttribute('href')) {
        next.querySelector('textarea').focus();
        return;
      }
      var tpl = document.getElementById('comment-form-template');
      if (!tpl) { location.href = link.href; return; }
      var node = tpl.content.firstElementChild.cloneNode(true), form = node.querySelector('form');
      var section = link.closest('section.pr-file');
      form.elements.path.value = section.getAttribute('data-path');
      form.elements.srcPath.value = section.getAttribute('data-src-path') || '';
      form.elements.line.value = link.getAttribute('data-line');
      form.elements.lineType.value = link.getAttribute('data-line-type');
      form.elements.fileType.value = link.getAttribute('data-file-type');
      form.elements.text.setAttribute('aria-label', link.getAttribute('aria-label'));
      node.setAttribute('data-for', link.getAttribute('href'));
      node.querySelector('td').colSpan = row.closest('table').classList.contains('split') ? 6 : 4;
      node.cmtLink = link;
      row.after(node);
      form.elements.text.focus();
    }
    function closeForm(row) {
      var link = row.cmtLink;
      row.remove();
      if (link) link.focus();
    }
    page.addEventListener('click', function (e) {
      if (!plainClick(e)) return;
      var a = e.target.closest('a.load-file, a[data-swap]');
      if (a) {
        e.preventDefault();
        swap(a.closest('section.pr-file'), a.getAttribute('href')).catch(function () { location.href = a.href; });
        return;
      }
      var c = e.target.closest('a.cmt');
      if (c) { e.preventDefault(); openForm(c); return; }
      var cancel = e.target.closest('[data-cancel]');
      if (cancel) closeForm(cancel.closest('tr'));
    });
    page.addEventListener('keydown', function (e) {
      if (e.key !== 'Escape') return;
      var row = e.target.closest && e.target.closest('tr.comment-form-row');
      if (row && row.cmtLink) closeForm(row);
    });
    page.addEventListener('submit', function (e) {
      var f = e.target, ask = f.getAttribute('data-confirm');
      if (ask && !window.confirm(ask)) { e.preventDefault(); return; }
      var b = f.querySelector('button[type=submit]');
      if (b) setTimeout(function () { b.disabled = true; }, 0);
    });
  });
})();
// The branch and tag picker (web/refs.rs): typing filters its list; Enter opens the first match
// (without this script the box searches the branches page, and the list is plain links); Escape
// or a click elsewhere closes it. Forms with `data-confirm` outside the pull-request diff ask
// first (deleting a branch or tag).
(function () {
  if (typeof module !== 'undefined') return;
  document.addEventListener('DOMContentLoaded', function () {
    var picker = document.getElementById('ref-picker');
    if (picker) {
      var input = picker.querySelector('[data-ref-filter]'), none = document.getElementById('ref-none');
      var items = Array.prototype.slice.call(picker.querySelectorAll('#ref-options li[data-name]'));
      var filter = function () {
        var text = input.value.trim().toLowerCase(), shown = 0;
        items.forEach(function (li) {
          var hit = !text || li.getAttribute('data-name').toLowerCase().indexOf(text) >= 0;
          li.hidden = !hit;
          if (hit) shown++;
        });
        picker.querySelectorAll('#ref-options li.group, #ref-options li.more').forEach(function (li) { li.hidden = !!text; });
        if (none) none.hidden = shown > 0;
      };
      input.addEventListener('input', filter);
      input.form.addEventListener('submit', function (e) {
        var first = items.filter(function (li) { return !li.hidden; })[0];
        if (first && input.value.trim()) { e.preventDefault(); location.href = first.querySelector('a').href; }
      });
      // Opened: ready to type; closed: the whole list again for next time.
      picker.addEventListener('toggle', function () {
        if (picker.open) input.focus(); else { input.value = ''; filter(); }
      });
      picker.addEventListener('keydown', function (e) {
        if (e.key === 'Escape') { picker.open = false; picker.querySelector('summary').focus(); }
      });
      document.addEventListener('click', function (e) { if (picker.open && !picker.contains(e.target)) picker.open = false; });
    }
    document.addEventListener('submit', function (e) {
      var f = e.target, ask = f.getAttribute && f.getAttribute('data-confirm');
      if (!ask || f.closest('[data-pr-diff]')) return;
      if (!window.confirm(ask)) e.preventDefault();
    });
  });
})();

// Source lines (web/file_view.rs): `#L10` and `#L10-20` mark those lines; a click on a line's
// number marks it, shift-click marks the range from the line marked before. The URL follows
// (replaceState, so the page does not jump), ready to be copied.
(function () {
  if (typeof module !== 'undefined') return;
  function range() {
    var m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
    if (!m) return null;
    var a = +m[1], b = m[2] ? +m[2] : a;
    return a <= b ? [a, b] : [b, a];
  }
  document.addEventListener('DOMContentLoaded', function () {
    var box = document.querySelector('[data-lines]');
    if (!box) return;
    var anchor = null;
    function mark(scroll) {
      box.querySelectorAll('.l.sel').forEach(function (l) { l.classList.remove('sel'); });
      var r = range();
      if (!r) return;
      anchor = anchor || r[0];
      for (var n = r[0]; n <= r[1] && n < r[0] + 100000; n++) {
        var l = document.getElementById('L' + n);
        if (!l) break;
        l.classList.add('sel');
      }
      var first = document.getElementById('L' + r[0]);
      if (scroll && first) first.scrollIntoView({ block: r[1] > r[0] ? 'start' : 'center' });
    }
    mark(true);
    window.addEventListener('hashchange', function () { anchor = null; mark(true); });
    box.addEventListener('click', function (e) {
      var l = e.target;
      if (!l.classList || !l.classList.contains('l')) return;
      // Only the number (the line's ::before) selects; a click on the code is a click on text.
      var before = getComputedStyle(l, '::before'), lr = l.getBoundingClientRect();
      var left = before.position === 'sticky' ? Math.max(lr.left, box.getBoundingClientRect().left) : lr.left;
      if (e.clientX - left > parseFloat(before.width) + 18) return;
      var n = +l.getAttribute('data-n');
      var hash = e.shiftKey && anchor ? '#L' + Math.min(anchor, n) + '-' + Math.max(anchor, n) : '#L' + n;
      if (!e.shiftKey || !anchor) anchor = n;
      if (e.shiftKey && window.getSelection) window.getSelection().removeAllRanges();
      history.replaceState(null, '', hash);
      mark(false);
    });
  });
})();
