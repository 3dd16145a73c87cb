// The sidebar of a page shows its own language's chapters and pages (the site holds both languages in one
// navigation); a Chinese page is marked lang="zh-CN" so the browser picks a Chinese font.
document.addEventListener("DOMContentLoaded", () => {
  const meta = document.querySelector('meta[name="course-language"]');
  if (!meta) return;
  const zh = meta.content === "zh";
  document.documentElement.lang = zh ? "zh-CN" : "en";
  const own = zh ? ["中文", "参考页面"] : ["Chapters", "Reference"];
  document.querySelectorAll(".bd-sidebar-primary p.caption").forEach((caption) => {
    if (own.includes(caption.textContent.trim())) return;
    caption.hidden = true;
    const list = caption.nextElementSibling;
    if (list && list.tagName === "UL") list.hidden = true;
  });
});
