"""Accounts (protocol v1.1): ``passwords`` (argon2id and the rules), ``store`` (the
account records), ``login_limit`` (failed checks per name and address), ``auth``
(a password check: limiter, store, hasher) and ``admin`` (the ``chat-admin``
command). Their Lua scripts are ``lua/*.lua`` (package data) with one typed
builder and reply each in ``scripts``; their keys are ``gateway.account_keys``
(which the Redis layer's name claim reads too).
"""
