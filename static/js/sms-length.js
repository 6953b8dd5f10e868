/* Live length of an SMS template, counted as scheduling/reminders/content.py counts it.
 *
 * The region (#sms-length, aria-live) names its textarea in data-source and carries in data-sms
 * what the server uses: the GSM-7 alphabet and extension table, the look-alike replacements made
 * on saving, the sample placeholder values, the part sizes and the words refused on a lock screen.
 * The count is of the sample message (placeholders filled, as the server's preview does):
 * GSM-7 septets (extension characters count 2) or, if any character is outside GSM-7, UCS-2 code
 * units. Without JavaScript the region keeps the server's figures and "Preview" recalculates them.
 */
(function () {
  "use strict";

  var region = document.getElementById("sms-length");
  if (!region) { return; }
  var source = document.getElementById(region.getAttribute("data-source"));
  var data;
  try { data = JSON.parse(region.getAttribute("data-sms")); } catch (e) { return; }
  if (!source || !data) { return; }

  var basic = data.gsm7_basic;
  var extension = data.gsm7_extension;

  function isGsm(ch) { return basic.indexOf(ch) !== -1 || extension.indexOf(ch) !== -1; }

  function allGsm(text) {
    for (var ch of text) { if (!isGsm(ch)) { return false; } }
    return true;
  }

  // content.to_gsm7: look-alikes replaced, accents GSM-7 lacks dropped (Zoë -> Zoe), others kept.
  function toGsm7(text) {
    var out = "";
    for (var ch of text) {
      var c = Object.prototype.hasOwnProperty.call(data.replacements, ch) ? data.replacements[ch] : ch;
      if (!allGsm(c)) {
        var base = Array.from(c.normalize("NFKD"))[0];
        if (base !== undefined && basic.indexOf(base) !== -1) { c = base; }
      }
      out += c;
    }
    return out;
  }

  // str.format with the sample values: {{ and }} are literal braces; unknown names stay as typed.
  function fill(body, unknown) {
    return body.replace(/\{\{|\}\}|\{([^{}]*)\}/g, function (match, name) {
      if (match === "{{") { return "{"; }
      if (match === "}}") { return "}"; }
      if (Object.prototype.hasOwnProperty.call(data.sample_values, name)) { return data.sample_values[name]; }
      unknown.push(match);
      return match;
    });
  }

  // content.sms_length
  function smsLength(text) {
    var nonGsm = [];
    for (var ch of text) {
      if (!isGsm(ch) && nonGsm.indexOf(ch) === -1) { nonGsm.push(ch); }
    }
    nonGsm.sort(function (a, b) { return a.codePointAt(0) - b.codePointAt(0); });
    if (nonGsm.length) {
      var units = text.length; // UTF-16 code units, as UCS-2 counts them
      return { characters: units, encoding: "UCS-2", parts: units <= data.single_ucs2 ? 1 : Math.ceil(units / data.part_ucs2), nonGsm: nonGsm };
    }
    var septets = 0;
    for (var c of text) { septets += extension.indexOf(c) !== -1 ? 2 : 1; }
    return { characters: septets, encoding: "GSM-7", parts: septets <= data.single_gsm7 ? 1 : Math.ceil(septets / data.part_gsm7), nonGsm: [] };
  }

  function escapeRegExp(word) { return word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  function clinicalWords(text) {
    var lowered = text.toLowerCase();
    return data.clinical_words.filter(function (word) {
      return new RegExp("(?<![a-z])" + escapeRegExp(word) + "(?![a-z])").test(lowered);
    });
  }

  function replacedCharacters(typed) {
    var seen = [];
    for (var ch of typed) {
      if (toGsm7(ch) !== ch && seen.indexOf(ch) === -1) { seen.push(ch); }
    }
    seen.sort(function (a, b) { return a.codePointAt(0) - b.codePointAt(0); });
    return seen.map(function (ch) { return ch + " becomes " + toGsm7(ch); });
  }

  function paragraph(text, className) {
    var p = document.createElement("p");
    if (className) { p.className = className; }
    p.textContent = text;
    return p;
  }

  function describe() {
    var typed = source.value.replace(/\r\n/g, "\n");
    var unknown = [];
    var text = toGsm7(fill(typed, unknown)).trim();
    var lines = [];
    if (!text) {
      lines.push(paragraph("The length is shown once the message has text and its placeholders are fixed."));
    } else {
      var length = smsLength(text);
      lines.push(paragraph("Sample message: " + length.characters + " characters, " + length.encoding + ", " +
        length.parts + " SMS part" + (length.parts === 1 ? "" : "s") + "."));
      if (length.nonGsm.length) {
        lines.push(paragraph("Not in GSM-7: " + length.nonGsm.join(" ") +
          ". Each SMS part holds " + data.single_ucs2 + " characters instead of " + data.single_gsm7 + ".", "warning"));
      }
    }
    if (unknown.length) {
      lines.push(paragraph("Not a placeholder: " + unknown.join(", ") + ". Use only those listed below.", "warning"));
    }
    var replaced = replacedCharacters(typed);
    if (replaced.length) { lines.push(paragraph("Saved as GSM-7: " + replaced.join(", ") + ".")); }
    var words = clinicalWords(toGsm7(typed));
    if (words.length) {
      lines.push(paragraph("Texts can be read on a locked phone. Remove: " + words.join(", ") + ".", "warning"));
    }
    return lines;
  }

  var shown = "";
  var timer = null;

  function update() {
    timer = null;
    var lines = describe();
    var key = lines.map(function (p) { return p.className + ":" + p.textContent; }).join("\n");
    if (key === shown) { return; } // unchanged: nothing new for screen readers to announce
    shown = key;
    region.replaceChildren.apply(region, lines);
  }

  // Debounced a little so a screen reader announces the length when typing pauses, not every key.
  source.addEventListener("input", function () {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(update, 250);
  });
  update();
})();
