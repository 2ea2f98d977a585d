"""The top floor: what puts the apps together.

``huimin/`` outside this folder is the core (settings, database, clock, personal data,
the registry, casework ...) and imports none of the apps; ``content``, ``notify``,
``bot`` and ``admin`` stand on it; this folder stands on all of them: the ``huimin``
command (:mod:`.cli`), the model aggregation alembic needs (:mod:`.models`), the
composition root that builds the database, Redis and the Redis-or-database pairs once
(:mod:`.resources`), the workers' supervisor and worker (:mod:`.serve`, :mod:`.worker`)
and the pre-flight check (:mod:`.doctor`).
"""

# What the apps hand the core when imported: the names some settings may take (the SMS
# providers), and the records key rotation must move with a phone and the tables it
# re-seals (notify.keys). Imported here, so every process started through this layer
# has them before it reads settings or touches a key.
import notify.keys
import notify.providers  # noqa: F401
