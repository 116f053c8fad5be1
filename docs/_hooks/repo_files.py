"""MkDocs hook: the site is built from the whole repository, not only from docs/.

- README.md is the site's home page (``index.md``), CHANGELOG.md its changelog, and each
  ``studies/NAME/README.md`` a page under "Studies" (the nav lists those that exist, and the
  Studies page links each study's folder to it).
- Every other file of ``studies/`` and ``bench/results/`` is copied into the site at its
  repository path, so the raw results the pages cite can be opened from them.
- A relative link is written as it reads on GitHub (``../bench/results/x.json`` from
  ``docs/``, ``docs/figures.md`` from README.md); here it is rewritten to the page or file the
  site holds for that repository path, so ``mkdocs build --strict`` checks every such link. A
  link to a repository file the site does not copy yet (``../mt/api.py``) copies that file too;
  a link to a folder opens its README, or a page listing its files; a link to a file that does
  not exist is left as it is, and the strict build fails on it.
- docs/api.md must document every name of ``mt.api.__all__``, each once (checked here).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.repo_files")

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MOUNTED_TREES = ("studies", "bench/results")  # copied whole (their README.md files as pages)
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}
STUDIES_NAV = "Studies"

# repository path (posix, relative to REPO) -> the file's src_uri in the site
_site_uri: dict[str, str] = {}
# a linked folder without a README (posix, relative to REPO) -> the generated page listing it
_folder_pages: dict[str, str] = {}

# Markdown links and images `](target)`, reference definitions `[x]: target`, HTML src/href.
LINK = re.compile(r"(\]\()(<[^>]*>|[^)\s]+)((?:\s+\"[^\"]*\")?\))")
REFDEF = re.compile(r"^(\s{0,3}\[[^\]]+\]:\s*)(\S+)(.*)$")
HTML_ATTR = re.compile(r"""((?:src|href)=")([^"]+)(")""")
FENCE = re.compile(r"^\s*(```|~~~)")


def _rel(path: Path) -> str:
    return path.resolve().relative_to(REPO).as_posix()


def _study_readmes() -> list[Path]:
    return sorted(p for p in (REPO / "studies").glob("*/README.md") if p.is_file())


def _title(readme: Path) -> str:
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return readme.parent.name


def _quiet_kernel() -> None:
    """The notebook's kernel (ipykernel, started by mkdocs-jupyter) logs two WARNING lines that are
    no fault of the build (its TCP transport on loopback; "parent appears to have exited" when the
    build ends first): it runs with an IPython folder of its own whose config logs errors only, so
    the build's output holds what matters."""
    if "IPYTHONDIR" in os.environ:
        return
    folder = Path(tempfile.mkdtemp(prefix="mt-docs-ipython-"))
    (folder / "profile_default").mkdir()
    (folder / "profile_default" / "ipython_kernel_config.py").write_text("c.Application.log_level = 'ERROR'\n")
    os.environ["IPYTHONDIR"] = str(folder)


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """The Studies section of the nav lists the study READMEs that exist."""
    _quiet_kernel()
    for item in config.nav or []:
        if isinstance(item, dict) and STUDIES_NAV in item and isinstance(item[STUDIES_NAV], list):
            known = {v for entry in item[STUDIES_NAV] for v in (entry.values() if isinstance(entry, dict) else [entry])}
            for readme in _study_readmes():
                uri = _rel(readme)
                if uri not in known:
                    item[STUDIES_NAV].append({_title(readme): uri})
    return config


def _mount(files: Files, config: MkDocsConfig, path: Path, uri: str) -> None:
    if files.get_file_from_path(uri) is None:
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    _site_uri[_rel(path)] = uri


def on_files(files: Files, config: MkDocsConfig) -> Files:
    _site_uri.clear()
    _folder_pages.clear()
    for f in files:  # the docs/ files (the theme's own files come from elsewhere)
        if f.abs_src_path and Path(f.abs_src_path).resolve().is_relative_to(DOCS):
            _site_uri[_rel(Path(f.abs_src_path))] = f.src_uri
    _mount(files, config, REPO / "README.md", "index.md")
    _mount(files, config, REPO / "CHANGELOG.md", "CHANGELOG.md")
    for tree in MOUNTED_TREES:
        for path in sorted((REPO / tree).rglob("*")):
            rel = _rel(path)
            if not path.is_file() or SKIP_PARTS & set(path.parts) or path.suffix == ".pyc":
                continue
            if path.suffix == ".md" and path.name != "README.md":
                continue  # another markdown file is copied only when a page links to it (below)
            _mount(files, config, path, rel)
    # Files outside docs/ that a page links to (a script, a source file) join the site.
    pending = [Path(f.abs_src_path) for f in files.documentation_pages() if f.abs_src_path]
    seen: set[Path] = set()
    while pending:
        page = pending.pop()
        if page in seen or not page.is_file():
            continue
        seen.add(page)
        for target in _targets(page.read_text(encoding="utf-8")):
            real = _resolve(page, target)
            if real is not None and real.is_dir() and real != DOCS and not real.is_relative_to(DOCS):
                real = _folder_page(files, config, real)
            if real is None or real.is_dir() or _rel(real) in _site_uri:
                continue
            _mount(files, config, real, _rel(real))
            if real.suffix == ".md":
                pending.append(real)
    return files


def _folder_page(files: Files, config: MkDocsConfig, folder: Path) -> Path | None:
    """A link to a folder of the repository opens its README, or else a page that lists its
    files (each copied into the site), as GitHub shows a folder."""
    for name in ("README.md", "index.md"):
        if (folder / name).is_file():
            return folder / name
    rel = _rel(folder)
    if rel in _folder_pages:
        return None
    entries = sorted(p for p in folder.iterdir() if not SKIP_PARTS & {p.name} and not p.name.startswith("."))
    lines = [f"# `{rel}/`", "", "A folder of the repository; its files:", ""]
    for entry in entries:
        if entry.is_file():
            if _rel(entry) not in _site_uri:
                _mount(files, config, entry, _rel(entry))
            lines.append(f"- [`{entry.name}`]({entry.name})")
        else:
            lines.append(f"- `{entry.name}/`")
    uri = f"{rel}/index.md"
    files.append(File.generated(config, uri, content="\n".join(lines) + "\n"))
    _folder_pages[rel] = uri
    return None


def _targets(markdown: str) -> list[str]:
    out: list[str] = []
    for line in _prose_lines(markdown):
        out += [m.group(2).strip("<>") for m in LINK.finditer(line)]
        out += [m.group(2) for m in HTML_ATTR.finditer(line)]
        ref = REFDEF.match(line)
        if ref:
            out.append(ref.group(2).strip("<>"))
    return out


def _prose_lines(markdown: str):
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _split(target: str) -> tuple[str, str]:
    path, hash_, anchor = target.partition("#")
    return path, hash_ + anchor


def _resolve(page: Path, target: str) -> Path | None:
    """The repository file or folder a relative link of ``page`` points at, if it exists."""
    path, _ = _split(target)
    if not path or re.match(r"^[a-z][a-z0-9+.-]*:", path) or path.startswith(("/", "mailto:")):
        return None
    real = (page.parent / path).resolve()
    try:
        real.relative_to(REPO)
    except ValueError:
        return None
    return real if real.exists() else None


def _site_target(page: Page, target: str) -> str | None:
    """``target`` as the site's relative URL source for ``page``, or None to leave it."""
    if not page.file.abs_src_path:
        return None
    real = _resolve(Path(page.file.abs_src_path), target)
    if real is None:
        return None
    if real.is_dir():
        for name in ("README.md", "index.md"):
            if (real / name).is_file():
                real = real / name
                break
        else:
            uri = _folder_pages.get(_rel(real))
            if uri is None:
                return None
            _, anchor = _split(target)
            return posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".") + anchor
    uri = _site_uri.get(_rel(real))
    if uri is None:
        return None
    _, anchor = _split(target)
    here = posixpath.dirname(page.file.src_uri)
    return posixpath.relpath(uri, here or ".") + anchor


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    lines, fenced = [], False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = LINK.sub(lambda m: m.group(1) + (_site_target(page, m.group(2).strip("<>")) or m.group(2))
                            + m.group(3), line)
            line = HTML_ATTR.sub(lambda m: m.group(1) + (_site_target(page, m.group(2)) or m.group(2)) + m.group(3),
                                 line)
            ref = REFDEF.match(line)
            if ref:
                line = ref.group(1) + (_site_target(page, ref.group(2).strip("<>")) or ref.group(2)) + ref.group(3)
        lines.append(line)
    markdown = "\n".join(lines) + "\n"
    if page.file.src_uri == "studies.md":
        markdown = _link_studies(markdown, page)
    return markdown


def _link_studies(markdown: str, page: Page) -> str:
    """On the Studies page, a table cell naming a study's folder (`` `studies/NAME/` ``) links to its
    README once the README exists, titled by its first heading."""
    here = posixpath.dirname(page.file.src_uri) or "."

    def link(m: re.Match) -> str:
        readme = REPO / m.group(1) / "README.md"
        if not readme.is_file():
            return m.group(0)
        return f"| [{_title(readme)}]({posixpath.relpath(_rel(readme), here)}) (`{m.group(1)}/`) |"

    return re.sub(r"^\| `(studies/[\w.-]+)/` \|", link, markdown, flags=re.MULTILINE)


def _api_names() -> list[str]:
    """``mt.api.__all__``, read without importing mt."""
    import ast

    tree = ast.parse((REPO / "mt" / "api.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def on_page_read_source(page: Page, config: MkDocsConfig) -> str | None:
    """The API page documents every name of ``mt.api.__all__``, each once: a name added to the
    API and not to docs/api.md (or one the API dropped) fails the strict build."""
    if page.file.src_uri != "api.md" or not page.file.abs_src_path:
        return None
    text = Path(page.file.abs_src_path).read_text(encoding="utf-8")
    documented = re.findall(r"^::: mt\.api\.(\w+)\s*$", text, flags=re.MULTILINE)
    names = set(_api_names())
    for name in sorted(names - set(documented)):
        log.warning("docs/api.md does not document mt.api.%s (in mt.api.__all__)", name)
    for name in sorted(set(documented) - names):
        log.warning("docs/api.md documents mt.api.%s, which mt.api.__all__ does not export", name)
    for name in sorted({n for n in documented if documented.count(n) > 1}):
        log.warning("docs/api.md documents mt.api.%s more than once", name)
    return text
