"""The store: every query of the index database, written once.

:class:`curate.db.index.Index` (what ``open_index`` returns and every command holds)
inherits the query mixins below, so a caller writes ``index.selection("latest")``,
``index.scorer(name)``, ``index.model(name)``, ``index.batch_ids(names)``,
``index.labels(ids)``. Only the store (this package and ``curate.db``) imports the ORM
models; each lookup has one error message. Rows come back as detached ORM objects
(read their attributes; do not write them) or as plain lists/dicts/arrays.

Modules, one table family each: :mod:`.images` (batches, images, duplicates),
:mod:`.labels` (labels and their precedence), :mod:`.embeddings` (models, embedding
sets and rows), :mod:`.selections`, :mod:`.scorers` (scorers, scores, batch checks),
:mod:`.runs` (training runs, simulations), :mod:`.labelstudio` (Label Studio tasks),
:mod:`.overview` (the report's bulk reads).
"""
