"""Pull-through caching of other registries.

Mirror mode (distribution's ``proxy.remoteurl``): with ``proxy_remote`` set, the whole
registry is a read-through cache of one upstream at its own root, as docker's
``registry-mirrors`` expects (``/v2/library/busybox/...``). Proxy-cache projects (Harbor's):
a project created with ``--proxy URL`` serves ``PROJECT/<upstream repository>`` from that
upstream next to the registry's own projects.

The caching rules are the same for both:

- a manifest asked for by tag is served from the cache while its tag was revalidated
  upstream less than ``proxy_ttl`` seconds ago; after that a HEAD upstream decides whether
  the cached one still stands or the new one is fetched;
- a manifest or blob asked for by digest is fetched once and kept (content never changes);
- a blob is streamed to the first clients while it is being fetched; concurrent first
  pulls of one blob, in any server process on the same root, fetch it once;
- writes are refused with ``UNSUPPORTED``;
- with the upstream down, what is cached is served (tags as last revalidated) and the
  rest is answered ``503 UNAVAILABLE`` naming the upstream.

Hits, misses, upstream errors and bytes fetched are counted on ``/metrics``; each fetch from
the upstream and each upstream failure is an event in the audit log.
"""
