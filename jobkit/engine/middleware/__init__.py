"""jobkit's Dramatiq middleware, one per file. Each gets what it needs in its constructor (the broker, a store, a
callback), never from a process-wide global; :mod:`jobkit.bootstrap` assembles the stack."""
