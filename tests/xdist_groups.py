"""`--dist loadgroup` under pytest >= 9: pytest-xdist 3.8 groups a test by appending "@group" to its node id through the
attribute `_nodeid`, which pytest 9 no longer reads (node ids are structured), so the suffix is silently lost and a group's
tests spread over the workers (pytest-dev/pytest-xdist#1386). conftest.py calls `group_node_ids` on the workers.
Kept apart from conftest.py (which imports torch) so that test_suite.py can load it into a small xdist run cheaply."""


def group_node_ids(items) -> None:
    "Append '@NAME' (names of the item's `xdist_group` marks, sorted, joined by '_') to each marked item's node id where it is missing."
    from _pytest.nodeid import coerce_node_id
    for it in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in it.iter_markers("xdist_group")})
        if names and it.nodeid.rfind("@") <= it.nodeid.rfind("]") and hasattr(it, "_id"):   # xdist's own suffix did not take
            it._id = coerce_node_id(f"{it.nodeid}@{'_'.join(names)}")
