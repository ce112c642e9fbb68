"""Replication: rules that copy images (manifests, indexes with every platform, their
referrers and blobs) from this registry to another one or from another one into this
registry, run by hand (``registry replicate run``), after each push (``--on-push``) or on a
schedule (``--every``), each run recorded with its counts (:mod:`registry.replication.cli`).

The copy itself speaks the distribution API to both sides through :mod:`registry.client`
(:mod:`registry.replication.copier`); rules and runs are kept by
:mod:`registry.replication.store`; a server process runs the triggered rules in a thread
(:mod:`registry.replication.worker`).
"""
