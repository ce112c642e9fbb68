"""Projects: the first path segment of a repository, with members in Harbor's roles, public
or private visibility and a storage quota (:mod:`registry.projects.model`). The store
(:mod:`.store`, :mod:`.postgres`), the cached roles the authorizer consults
(:mod:`.policy`), the quota checks of the push handlers (:mod:`.quota`), and the service
(:mod:`.service`) that the ``registry project`` commands (:mod:`.cli`) and the management
API (:mod:`registry.api.projects`) share."""
