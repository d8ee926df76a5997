"""Accounts (protocol v1.1): ``passwords`` (argon2id and the rules), ``store`` (the
account records), ``login_limit`` (failed checks per name and address), ``auth``
(a password check: limiter, store, hasher) and ``admin`` (the ``chat-admin``
command). Their Redis scripts and keys are the Redis layer's
(``gateway.account_lua``, ``gateway.account_keys``).
"""
