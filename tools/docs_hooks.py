"""MkDocs hook for tools/build_docs.py (loaded by mkdocs.yml `hooks:`): the table of contents of a notebook page links
to its headings.

mkdocs-jupyter builds a notebook's table of contents from its markdown with every inline code span removed, so a
heading such as "## `ktae-lab score`" becomes an empty entry linking to `#_1`, while the page's heading carries the id
nbconvert gives it (`ktae-lab-score`). Here the entries are built from the markdown cells with the code spans kept,
and each id is computed as nbconvert computes the heading's id, so every entry names its heading and links to it.
"""
import json, re
from pathlib import Path


def _heading_id(text:str) -> str:
    "The id nbconvert (through mkdocs-jupyter) gives a heading whose text is `text`."
    from mkdocs_jupyter.utils import slugify
    from nbconvert.filters.strings import _convert_header_id
    return _convert_header_id(slugify(text))


def _toc_tokens(fpath, toc_depth):
    "(toc tokens, title) of a notebook: its markdown cells' headings, named by their text and linked to their ids."
    import markdown
    from markdown.extensions.toc import TocExtension
    nb = json.loads(Path(fpath).read_text(encoding="utf-8"))
    md_src = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    md_src = re.sub(r"^```.*?^```", "", md_src, flags=re.S | re.M)          # fenced blocks hold no headings
    md = markdown.Markdown(extensions=[TocExtension(toc_depth=toc_depth)])
    md.convert(md_src)
    def fix(tokens):
        for t in tokens:
            t["name"] = re.sub(r"\$([^$]*)\$", r"\1", t["name"])
            t["id"] = _heading_id(t["name"]); fix(t["children"])
        return tokens
    tokens = fix(md.toc_tokens)
    title = next((t["name"] for t in tokens if t["level"] == 1), None)
    return tokens, title


def on_startup(**kw):
    import mkdocs_jupyter.plugin as plugin
    plugin._get_nb_toc_tokens = _toc_tokens
