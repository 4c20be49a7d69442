// Copy a message's or a code block's text; resolves to whether it worked. The Clipboard API
// exists only in secure contexts (https, localhost): a demo served over plain http on another
// address falls back to copying a selection.
window.behestCopy = async function (text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const box = document.createElement("textarea");
    box.value = text;
    box.setAttribute("readonly", "");
    box.style.position = "fixed";
    box.style.opacity = "0";
    document.body.appendChild(box);
    box.select();
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    } finally {
      box.remove();
    }
  }
};
