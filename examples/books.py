"""Tools over a small bookshelf: the README's example of bringing your own tools.

taskloom run "Who wrote Dune?" --no-world \
    --tools examples/books.py --examples examples/books.jsonl
"""

from __future__ import annotations

import taskloom

BOOKS = {
    "dune": {"title": "Dune", "author": "Frank Herbert", "year": 1965, "pages": 412},
    "emma": {"title": "Emma", "author": "Jane Austen", "year": 1815, "pages": 474},
    "middlemarch": {"title": "Middlemarch", "author": "George Eliot", "year": 1871, "pages": 880},
    "solaris": {"title": "Solaris", "author": "Stanislaw Lem", "year": 1961, "pages": 204},
}
AUTHORS = {
    "frank herbert": {"name": "Frank Herbert", "born": 1920, "country": "United States"},
    "jane austen": {"name": "Jane Austen", "born": 1775, "country": "England"},
    "george eliot": {"name": "George Eliot", "born": 1819, "country": "England"},
    "stanislaw lem": {"name": "Stanislaw Lem", "born": 1921, "country": "Poland"},
}


@taskloom.tool(cacheable=True)
def book(title: str) -> dict[str, object]:
    """A book by its title: its title, author, year of publication and pages."""
    found = BOOKS.get(title.strip().lower())
    if found is None:
        raise LookupError(f"no book titled {title!r}; known: {', '.join(BOOKS)}")
    return found


@taskloom.tool(cacheable=True)
def author(name: str) -> dict[str, object]:
    """An author by name: their name, year of birth and country."""
    found = AUTHORS.get(name.strip().lower())
    if found is None:
        raise LookupError(f"no author named {name!r}")
    return found
