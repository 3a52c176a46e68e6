// The clubs page's import: a chosen CSV file is read into the text box the form sends (without
// JavaScript, the file's text can be pasted there).
(function () {
  var input = document.getElementById("import-file");
  var text = document.getElementById("import-csv");
  if (!input || !text) { return; }
  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () { text.value = reader.result; };
    reader.readAsText(file);
  });
})();
