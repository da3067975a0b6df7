"""Each script of a page once: sphinx-thebe registers its configuration script twice.

The second copy re-declares ``const THEBE_JS_URL`` and the browser reports a SyntaxError
on every page (seen with sphinx-thebe 0.3 under Jupyter Book 1). The course does not use
thebe, so nothing else changes; ``tools/check_book.py`` checks that pages have no console
errors.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, scripts = set(), []
    for script in context.get("script_files", []):
        # the copies differ only in the filename of an inline script (None once, "" once)
        key = (getattr(script, "filename", None) or "", str(script) if not hasattr(script, "attributes") else "",
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
