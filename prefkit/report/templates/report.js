// Paging and search of the kept rows: rows are in the page (rendered and escaped by the report), this only shows
// and hides them. Each split's list is a <div class="rows" data-page-size="N">.
(function () {
  "use strict";
  function setup(list) {
    var split = list.getAttribute("data-split");
    var rows = Array.prototype.slice.call(list.querySelectorAll(".kept-row"));
    var size = parseInt(list.getAttribute("data-page-size"), 10) || 20;
    var box = document.querySelector('.tools[data-split="' + split + '"]');
    var input = box.querySelector("input[type=search]");
    var info = box.querySelector(".info");
    var prev = box.querySelector("button.prev");
    var next = box.querySelector("button.next");
    var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var page = 0, matching = rows;
    function show() {
      var pages = Math.max(1, Math.ceil(matching.length / size));
      page = Math.min(Math.max(page, 0), pages - 1);
      rows.forEach(function (r) { r.classList.add("hidden"); });
      matching.slice(page * size, (page + 1) * size).forEach(function (r) { r.classList.remove("hidden"); });
      info.textContent = matching.length + " matching rows · page " + (page + 1) + " of " + pages;
      info.setAttribute("data-matching", String(matching.length));
      info.setAttribute("data-page", String(page + 1));
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      matching = rows.filter(function (r, i) { return !q || texts[i].indexOf(q) >= 0; });
      page = 0;
      show();
    });
    prev.addEventListener("click", function () { page -= 1; show(); });
    next.addEventListener("click", function () { page += 1; show(); });
    show();
  }
  document.querySelectorAll(".rows[data-split]").forEach(setup);
})();
